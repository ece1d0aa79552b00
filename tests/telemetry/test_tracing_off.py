"""Tracing off costs nothing: no OpenTelemetry import in a whole turn, and `enabled: false` / OTEL_SDK_DISABLED win."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.agent.conftest import TINY_DIR, write_script
from tests.telemetry.conftest import OTEL_VARIABLES

REPO = Path(__file__).resolve().parents[2]
# Llama Guard and Prompt Guard only: Code Shield runs semgrep, which imports OpenTelemetry itself
POLICY = """\
version: 1
models:
  main: {source: tiny:llama-3.1-instruct, max_new_tokens: 32}
  llama_guard: {source: tiny:llama-guard, variant: 8b, device: cpu, dtype: float32}
  prompt_guard: {source: tiny:prompt-guard, device: cpu}
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: true, score: jailbreak}}
  model_output: {llama_guard: {enabled: true}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: true}}
  code: {code_shield: {enabled: false}}
audit: {path: audit.jsonl}
"""
# OpenTelemetry is made unimportable in the probe, and every attempt to import it is recorded: langgraph's langsmith
# tries it when it is imported (and copes without it); our code must not try it at all while tracing is off, and a
# turn that did would fail on the ImportError.
PROBE = """\
import json, sys
attempts = []
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            attempts.append(name)
            raise ModuleNotFoundError(f"blocked by the test: {name}")
        return None
sys.meta_path.insert(0, Block())
from assistant.api import Assistant
imported = len(attempts)
bot = Assistant.from_policy(sys.argv[1], model="scripted:" + sys.argv[2], db_path=sys.argv[3], tiny_dir=sys.argv[4])
result = bot.run("What is the weather like?", thread="t-off")
print(json.dumps({"text": result.text, "tried": attempts[imported:],
                  "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
"""


def run_turn(tmp_path: Path, extra_env: dict[str, str], policy_extra: str = "") -> dict[str, object]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY + policy_extra, encoding="utf-8")
    script = write_script(tmp_path, "The weather is mild today.<|eot_id|>")
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES}
    env.update(ASSISTANT_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO), **extra_env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(policy), str(script), str(tmp_path / "threads.sqlite"), str(TINY_DIR)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_turn_with_tracing_off_imports_no_opentelemetry(tmp_path: Path) -> None:
    result = run_turn(tmp_path, {})
    assert result == {"text": "The weather is mild today.", "tried": [], "loaded": []}


def test_sdk_disabled_and_enabled_false_win_over_the_exporter_variables(tmp_path: Path) -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens: it must not be tried
    assert run_turn(tmp_path, {**endpoint, "OTEL_SDK_DISABLED": "true"})["tried"] == []
    assert run_turn(tmp_path, endpoint, "telemetry: {enabled: false}\n")["tried"] == []


def test_the_probe_sees_a_turn_that_traces(tmp_path: Path) -> None:
    """The probe's own check: with tracing on, the turn does reach for OpenTelemetry (and fails without it)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    script = write_script(tmp_path, "Hi.<|eot_id|>")
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES}
    env.update(ASSISTANT_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO), OTEL_TRACES_EXPORTER="otlp")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(policy), str(script), str(tmp_path / "threads.sqlite"), str(TINY_DIR)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert out.returncode != 0 and "blocked by the test: opentelemetry" in out.stderr
