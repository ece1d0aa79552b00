"""`Assistant.list_threads` on PostgreSQL (a throwaway cluster): the threads of every replica sharing the database,
the most recently updated first - what the chat lists instead of opening a SQLite file of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant import storage
from assistant.api import Assistant
from guards.policy import load_policy
from tests.scale.conftest import URL_ENV

POLICY = f"""\
version: 1
stages:
  user_input: {{llama_guard: {{enabled: false}}, prompt_guard: {{enabled: false}}}}
  model_output: {{llama_guard: {{enabled: false}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: false}}}}
audit: {{path: audit.jsonl}}
storage: {{backend: postgres, url_env: {URL_ENV}}}
"""


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def replica(policy: Path, name: str, *answers: str) -> Assistant:
    script = policy.parent / f"{name}.jsonl"
    script.write_text("".join(json.dumps({"completion": a}) + "\n" for a in answers), encoding="utf-8")
    return Assistant.from_policy(policy, model=f"scripted:{script}")


async def test_list_threads_sees_every_replica(policy: Path, pg_url: str) -> None:
    await storage.migrate(storage.storage_target(load_policy(policy).storage))
    first = replica(policy, "a", "One.<|eot_id|>", "Three.<|eot_id|>")
    second = replica(policy, "b", "Two.<|eot_id|>")
    assert await first.list_threads() == []
    await first.arun("first", thread="t-a")
    await second.arun("second", thread="t-b")
    assert await first.list_threads() == ["t-b", "t-a"]
    await first.arun("again", thread="t-a")
    assert await second.list_threads() == ["t-a", "t-b"]
    await second.delete_thread("t-b")
    assert await first.list_threads() == ["t-a"]
    assert not (policy.parent / "home").exists() or not list((policy.parent / "home").rglob("threads.sqlite"))
