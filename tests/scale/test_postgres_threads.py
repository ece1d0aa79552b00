"""Threads in a real PostgreSQL (a throwaway cluster): `assistant db migrate`, threads and pending approvals shared
by two Assistant instances (two replicas' worth of state), and concurrent clients across both losing nothing.

The guards are off here (these tests are about where state lives; the guarded paths are the same code for either
store) and the main model is scripted.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assistant.api import Assistant
from assistant.cli.main import cli
from assistant.storage import StorageError
from tests.scale.conftest import URL_ENV
from tools.custom import tool

POLICY = f"""\
version: 1
stages:
  user_input: {{llama_guard: {{enabled: false}}, prompt_guard: {{enabled: false}}}}
  model_output: {{llama_guard: {{enabled: false}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: false}}}}
  code: {{code_shield: {{enabled: false}}}}
tools:
  approval_required: [send_email]
audit: {{path: audit.jsonl}}
storage: {{backend: postgres, url_env: {URL_ENV}}}
"""
CALL_EMAIL = '<|python_tag|>{"name": "send_email", "parameters": {"to": "bob@example.test", "body": "hi"}}<|eom_id|>'
SENT: list[dict[str, str]] = []


@tool(side_effects=True)
def send_email(to: str, body: str) -> str:
    """Send an email.

    Args:
        to: recipient address
        body: the message
    """
    SENT.append({"to": to, "body": body})
    return f"sent to {to}"


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def replica(policy: Path, name: str, *answers: str) -> Assistant:
    """One Assistant with its own scripted model (one line per model call), sharing the policy's database."""
    script = policy.parent / f"{name}.jsonl"
    script.write_text("".join(json.dumps({"completion": a}) + "\n" for a in answers), encoding="utf-8")
    return Assistant.from_policy(policy, tools=[send_email], model=f"scripted:{script}")


def migrate(policy: Path) -> str:
    result = CliRunner().invoke(cli, ["db", "migrate", "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    return result.output


async def amigrate(policy: Path) -> None:
    """`assistant db migrate`'s work, from inside a running event loop."""
    from assistant import storage
    from guards.policy import load_policy

    await storage.migrate(storage.storage_target(load_policy(policy).storage))


def test_db_migrate_and_status(policy: Path, pg_url: str) -> None:
    runner = CliRunner()
    before = runner.invoke(cli, ["db", "status", "--policy", str(policy)])
    assert before.exit_code == 1 and "no tables" in before.output and "assistant db migrate" in before.output
    first = migrate(policy)
    assert "migrated from no tables to version" in first
    assert "already at schema version" in migrate(policy)  # idempotent: safe on every deploy
    after = runner.invoke(cli, ["db", "status", "--policy", str(policy)])
    assert after.exit_code == 0 and "(current)" in after.output
    assert "postgres:postgresql://postgres@127.0.0.1" in after.output


def test_db_migrate_errors_are_clear(policy: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV)
    missing = CliRunner().invoke(cli, ["db", "migrate", "--policy", str(policy)])
    assert missing.exit_code == 2 and URL_ENV in missing.output and "not set" in missing.output
    monkeypatch.setenv(URL_ENV, "postgresql://postgres:secret@127.0.0.1:1/none")
    down = CliRunner().invoke(cli, ["db", "migrate", "--policy", str(policy)])
    assert down.exit_code == 2 and "cannot connect" in down.output and "secret" not in down.output


async def test_unmigrated_database_is_refused_with_the_fix(policy: Path, pg_url: str) -> None:
    bot = replica(policy, "a", "Hello.<|eot_id|>")
    with pytest.raises(StorageError, match="assistant db migrate"):
        await bot.arun("Hi", thread="t1")


async def test_thread_continues_on_another_replica(policy: Path, pg_url: str) -> None:
    await amigrate(policy)
    first = replica(policy, "a", "Nice to meet you, Ada.<|eot_id|>")
    assert (await first.arun("My name is Ada.", thread="t-ada")).text == "Nice to meet you, Ada."
    second = replica(policy, "b", "Your name is Ada.<|eot_id|>")
    prompts: list[str] = []
    stream = second.backend.stream

    def recording(prompt_ids: list[int], params: Any) -> Any:
        prompts.append(second.tokenizer.decode(prompt_ids))
        return stream(prompt_ids, params)

    second.backend.stream = recording  # type: ignore[method-assign]
    assert (await second.arun("What is my name?", thread="t-ada")).text == "Your name is Ada."
    assert "My name is Ada." in prompts[0] and "Nice to meet you, Ada." in prompts[0]
    roles = [m["role"] for m in await first.history("t-ada")]
    assert roles == ["user", "assistant", "user", "assistant"]


async def test_pending_approval_answered_on_another_replica(policy: Path, pg_url: str) -> None:
    await amigrate(policy)
    SENT.clear()
    first = replica(policy, "a", CALL_EMAIL)
    asked = await first.arun("Email Bob hi", thread="t-mail")
    assert asked.pending_approval is not None and asked.pending_approval.name == "send_email" and SENT == []
    second = replica(policy, "b", "Sent.<|eot_id|>")
    pending = await second.pending_approval("t-mail")
    assert pending is not None and pending.call_id == asked.pending_approval.call_id
    done = await second.aresume("t-mail", True, call_id=pending.call_id)
    assert done.text == "Sent." and SENT == [{"to": "bob@example.test", "body": "hi"}]
    assert await first.pending_approval("t-mail") is None  # the first replica sees the answer too


async def test_concurrent_clients_across_two_replicas_lose_nothing(policy: Path, pg_url: str) -> None:
    await amigrate(policy)
    clients, turns = 16, 2
    answers = [f"Answer {i}.<|eot_id|>" for i in range(clients * turns)]
    replicas = [replica(policy, "a", *answers), replica(policy, "b", *answers)]

    async def client(i: int) -> None:
        for turn in range(turns):  # each client's turns alternate between the replicas, as a load balancer might
            bot = replicas[(i + turn) % 2]
            result = await bot.arun(f"client {i} turn {turn}", thread=f"c{i}")
            assert result.text is not None and result.text.startswith("Answer "), result

    await asyncio.gather(*(client(i) for i in range(clients)))
    for i in range(clients):
        history = await replicas[i % 2].history(f"c{i}")
        users = [m["content"] for m in history if m["role"] == "user"]
        assert users == [f"client {i} turn {t}" for t in range(turns)]
        assert [m["role"] for m in history] == ["user", "assistant"] * turns


async def test_sqlite_stays_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace(f"storage: {{backend: postgres, url_env: {URL_ENV}}}",
                                   "storage: {path: threads/here.sqlite}"), encoding="utf-8")
    bot = replica(path, "a", "Hello.<|eot_id|>")
    assert bot.db_path == tmp_path / "threads" / "here.sqlite"
    assert (await bot.arun("Hi", thread="t")).text == "Hello."
    assert bot.db_path.is_file()


async def test_concurrent_turns_on_one_thread_are_serialised_across_replicas(policy: Path, pg_url: str) -> None:
    """Two replicas taking turns on the same thread at once: each turn runs alone (a per-thread lock in the
    database), so none is lost to a fork of the checkpoint history."""
    await amigrate(policy)
    turns = 8
    answers = [f"Answer {i}.<|eot_id|>" for i in range(turns)]
    replicas = [replica(policy, "a", *answers), replica(policy, "b", *answers)]
    results = await asyncio.gather(*(replicas[i % 2].arun(f"message {i}", thread="shared") for i in range(turns)))
    assert all(r.text and r.text.startswith("Answer ") for r in results)
    history = await replicas[0].history("shared")
    assert sorted(m["content"] for m in history if m["role"] == "user") == sorted(f"message {i}" for i in range(turns))
    assert [m["role"] for m in history] == ["user", "assistant"] * turns
