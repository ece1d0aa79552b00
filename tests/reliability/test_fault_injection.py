"""Fault injection: every guard and the model backend, made to fail in every way, at every stage of a real turn.

The guards are the real ones (tiny trained Llama Guard / Prompt Guard, real Code Shield), loaded as the agent loads
them; a fault is injected by replacing one method of the loaded guard object, and armed only for the text of the
stage under test (a marker in that text), so every earlier stage runs the real guard. The turn runs through the real
graph with a scripted main model. Each case must end:

- blocked, as a guard-error refusal (Refusal.guard_error, `assistant run` exit 4) at the stage under test;
- with the audit log holding the failed verdict (error set) and verifying intact;
- with no text from that stage in any event, no tool run for a blocked call, nothing blocked in the thread's history.

Model backend faults end in a model_backend Error (exit 5) with no partial answer released. The matrix is counted
in `test_fault_matrix_size` (the number is reported in the issue).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from assistant.api import Assistant
from assistant.events import Error, Final, Refusal, TokenDelta, ToolResult
from guards.audit.log import verify_audit_log
from tests.reliability.helpers import TINY_DIR
from tools.custom import tool

GUARDS = ("llama_guard", "prompt_guard", "code_shield")
STAGES = ("user_input", "model_output", "tool_call", "tool_result", "code")
GUARD_FAULTS = ("raise", "hang", "garbage_type", "garbage_value", "die")
BACKEND_FAULTS = ("raise", "hang", "garbage", "die_mid_stream", "cancelled")
BACKEND_POSITIONS = ("first_call", "after_tool")
TIMEOUT_S = 0.75  # the timeout of the guard under test: a hang must end the check after this
NEIGHBOUR_TIMEOUT_S = 60  # the other guards' (a loaded 2-core machine must not make them time out first)

# Per stage: a marker only that stage's checked text holds (so earlier stages run the real guard) and a secret that
# must never reach an event when that stage blocks.
USER_TEXT = "Please fetch the mark-user page"
ANSWER = "mark-answer SECRET-ANSWER The page says hello."
RESULT = "mark-result SECRET-RESULT page content"
CODE = "print('mark-code SECRET-CODE')"
CALL_FETCH = '<|python_tag|>{"name": "fetch_page", "parameters": {"name": "mark-args"}}<|eom_id|>'
CALL_CODE = '<|python_tag|>' + CODE + "<|eom_id|>"


def armed(stage: str, text: str) -> bool:
    """Is `text` the text checked at `stage` in the scenario?"""
    if stage == "user_input":
        return "mark-user" in text
    if stage == "model_output":
        return "mark-answer" in text
    if stage == "tool_call":
        return text.lstrip().startswith("{") and "mark-args" in text
    if stage == "tool_result":
        return "mark-result" in text
    return "mark-code" in text and not text.lstrip().startswith("{")


def script_for(stage: str) -> list[str]:
    """The main model's completions that make the turn reach `stage`."""
    if stage in ("user_input", "model_output"):
        return [ANSWER + "<|eot_id|>"]
    if stage == "code":
        return [CALL_CODE, "Done.<|eot_id|>"]
    return [CALL_FETCH, ANSWER.replace("mark-answer", "fine") + "<|eot_id|>"]


def policy_text(guard: str | None, stage: str, *, code_interpreter: bool, neighbours: bool = True) -> str:
    """Only the guard under test runs at the stage under test, next to the other (cheap) tiny guards there, so one
    failing guard must block even though the others allow."""
    enabled: dict[str, set[str]] = {s: set() for s in STAGES}
    if guard is not None:
        enabled[stage] = {guard} | ({"llama_guard", "prompt_guard"} if stage != "code" and neighbours else set())
    stages = "\n".join(
        f"  {s}: {{" + ", ".join(f"{g}: {{enabled: {str(g in enabled[s]).lower()}}}" for g in GUARDS) + "}"
        for s in STAGES
    )
    return f"""\
version: 1
models:
  main: {{context_window: 8192, max_new_tokens: 64, timeout_s: 1}}
  llama_guard: {{source: tiny:llama-guard, variant: 8b, device: cpu, dtype: float32}}
  prompt_guard: {{source: tiny:prompt-guard, device: cpu}}
llama_guard: {{timeout_s: {NEIGHBOUR_TIMEOUT_S}}}
prompt_guard: {{timeout_s: {NEIGHBOUR_TIMEOUT_S}}}
code_shield: {{timeout_s: {NEIGHBOUR_TIMEOUT_S}, actions: {{block: block, warn: block, ignore: allow}}}}
stages:
{stages}
audit: {{path: audit.jsonl, texts: full}}
tools:
  untrusted_content: allow
  builtin:
    code_interpreter: {{enabled: {str(code_interpreter).lower()}}}
agent: {{max_steps: 4, max_tool_retries: 1}}
"""


# --- faults ------------------------------------------------------------------------------------------------------


class InjectedFault(RuntimeError):
    pass


@dataclass
class Hangs:
    """Threads blocked by `hang` faults, released at teardown so no worker thread outlives its test."""

    release: threading.Event

    def block(self) -> None:
        self.release.wait(10 * TIMEOUT_S)


def garbage(guard: str, kind: str) -> Any:
    """What a broken guard might hand back: the wrong type, or the right shape with values that mean nothing."""
    if kind == "garbage_type":
        return "unsafe\nbanana" if guard == "llama_guard" else None
    if guard == "llama_guard":
        return SimpleNamespace(
            unsafe=False, score=math.nan, categories=None, model_verdict="maybe", text="", reasons=()
        )
    if guard == "prompt_guard":
        return SimpleNamespace(score=math.nan, kind="injection", version=1, windows=1, tokens=3, max_window=0)
    return SimpleNamespace(treatment="banana", findings=None, languages=(), latency_ms=0.0, error=None)


GUARD_METHODS = {"llama_guard": ("check_text",), "prompt_guard": ("score",), "code_shield": ("scan_code", "scan_text")}


def checked_text(guard: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return str(args[0] if args else next(iter(kwargs.values()), ""))


def faulty(guard: str, original: Callable[..., Any], stage: str, fault: str, hangs: Hangs) -> Callable[..., Any]:
    is_async = asyncio.iscoroutinefunction(original)

    def act(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bool, Any]:
        if not armed(stage, checked_text(guard, args, kwargs)):
            return False, None
        if fault == "raise":
            raise InjectedFault(f"{guard} exploded")
        if fault == "die":  # the worker died: the exception the loop itself uses for cancellation
            raise asyncio.CancelledError()
        if fault.startswith("garbage"):
            return True, garbage(guard, fault)
        return True, "hang"

    if is_async:

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            hit, value = act(args, kwargs)
            if not hit:
                return await original(*args, **kwargs)
            if value == "hang":
                await asyncio.sleep(3600)
            return value

        return wrapper

    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        hit, value = act(args, kwargs)
        if not hit:
            return original(*args, **kwargs)
        if value == "hang":
            hangs.block()
            raise InjectedFault("released after the test")
        return value

    return sync_wrapper


def inject(bot: Assistant, guard: str, stage: str, fault: str, hangs: Hangs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the method of the loaded guard object that the runner calls."""
    runner = bot.pipeline.runners[guard]
    monkeypatch.setattr(runner, "timeout_s", TIMEOUT_S)  # short for this guard alone: it runs at that stage only
    target = runner.load()  # loads it (shared per process)
    patched = 0
    for name in GUARD_METHODS[guard]:
        original = getattr(target, name, None)
        if original is not None:
            monkeypatch.setattr(target, name, faulty(guard, original, stage, fault, hangs))
            patched += 1
    assert patched, f"no method to inject into on {type(target).__name__}"


# --- the scenario ----------------------------------------------------------------------------------------------


@pytest.fixture
def hangs() -> Any:
    event = threading.Event()
    yield Hangs(event)
    event.set()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))


@dataclass
class Scenario:
    bot: Assistant
    ran: list[str]
    audit: Path


def make_bot(tmp_path: Path, guard: str | None, stage: str, completions: list[str], *, neighbours: bool = True
             ) -> Scenario:
    ran: list[str] = []

    @tool
    def fetch_page(name: str) -> str:
        """Fetch a web page.

        Args:
            name: which page
        """
        ran.append(name)
        return RESULT

    policy = tmp_path / "policy.yaml"
    policy.write_text(
        policy_text(guard, stage, code_interpreter=stage == "code", neighbours=neighbours), encoding="utf-8"
    )
    script = tmp_path / "model.jsonl"
    script.write_text("".join(json.dumps({"completion": c}) + "\n" for c in completions), encoding="utf-8")
    bot = Assistant.from_policy(
        policy, tools=[fetch_page], model=f"scripted:{script}", db_path=tmp_path / "threads.sqlite", tiny_dir=TINY_DIR
    )
    return Scenario(bot, ran, tmp_path / "audit.jsonl")


def dump(events: Any) -> str:
    return "\n".join(json.dumps(e.to_json(), ensure_ascii=False) for e in events)


SECRETS = {"user_input": None, "model_output": "SECRET-ANSWER", "tool_call": None, "tool_result": "SECRET-RESULT",
           "code": None}


@pytest.mark.parametrize("fault", GUARD_FAULTS)
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("guard", GUARDS)
async def test_guard_fault_fails_closed(guard: str, stage: str, fault: str, tmp_path: Path, hangs: Hangs,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = make_bot(tmp_path, guard, stage, script_for(stage))
    inject(scenario.bot, guard, stage, fault, hangs, monkeypatch)
    try:
        result = await asyncio.wait_for(scenario.bot.arun(USER_TEXT, thread="t"), 60)
    finally:
        hangs.release.set()  # let a hung guard thread finish before the event loop closes

    last = result.events[-1]
    assert isinstance(last, Refusal), f"turn ended with {last!r}"
    assert last.guard_error and last.stage == stage
    failed = [v for v in result.verdicts if v.guard == guard and v.stage == stage]
    assert failed and failed[-1].error and failed[-1].decision == "block"
    assert not any(isinstance(e, Final | TokenDelta) for e in result.events)
    secret = SECRETS[stage]
    if secret is not None:
        assert secret not in dump(result.events)
        assert secret not in json.dumps(await scenario.bot.history("t"))
    if stage in ("tool_call", "code"):
        assert scenario.ran == [] and not any(isinstance(e, ToolResult) for e in result.events)

    report = verify_audit_log(scenario.audit)
    assert report.intact, report.problems
    records = [json.loads(line) for line in scenario.audit.read_text(encoding="utf-8").splitlines()]
    errors = [
        r for r in records
        if "verdict" in r and r.get("stage") == stage and r["verdict"]["guard"] == guard and r["verdict"]["error"]
    ]
    assert errors and errors[-1]["verdict"]["decision"] == "block"


# --- the model backend ---------------------------------------------------------------------------------------------


def faulty_stream(original: Callable[..., AsyncIterator[str]], fault: str, position: str, hangs: Hangs):
    calls = {"n": 0}

    async def stream(prompt_ids: list[int], params: Any) -> AsyncIterator[str]:
        calls["n"] += 1
        if calls["n"] < (1 if position == "first_call" else 2):
            async for delta in original(prompt_ids, params):
                yield delta
            return
        if fault == "raise":
            raise InjectedFault("the model server went away")
        if fault == "cancelled":
            raise asyncio.CancelledError()
        yield "SECRET-PARTIAL "
        if fault == "garbage":
            yield b"\xff\xfe not text"  # type: ignore[misc]
            yield None  # type: ignore[misc]
        elif fault == "die_mid_stream":
            raise InjectedFault("connection reset mid-stream")
        elif fault == "hang":
            await asyncio.sleep(3600)
        yield "<|eot_id|>"

    return stream


@pytest.mark.parametrize("position", BACKEND_POSITIONS)
@pytest.mark.parametrize("fault", BACKEND_FAULTS)
async def test_backend_fault_ends_in_a_model_error(fault: str, position: str, tmp_path: Path, hangs: Hangs,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    completions = [CALL_FETCH, "fine<|eot_id|>"] if position == "after_tool" else ["fine<|eot_id|>"]
    scenario = make_bot(tmp_path, "code_shield", "model_output", completions, neighbours=False)
    backend = scenario.bot.backend
    monkeypatch.setattr(backend, "stream", faulty_stream(backend.stream, fault, position, hangs))
    result = await asyncio.wait_for(scenario.bot.arun(USER_TEXT, thread="t"), 60)

    last = result.events[-1]
    assert isinstance(last, Error) and last.kind == "model_backend", f"turn ended with {last!r}"
    assert "SECRET-PARTIAL" not in dump(result.events)
    assert "SECRET-PARTIAL" not in json.dumps(await scenario.bot.history("t"))
    assert scenario.ran == ([] if position == "first_call" else ["mark-args"])
    if scenario.audit.exists():
        assert verify_audit_log(scenario.audit).intact


def test_fault_matrix_size() -> None:
    """The number of fault cases this file runs (reported in issue 8)."""
    guard_cases = len(GUARDS) * len(STAGES) * len(GUARD_FAULTS)
    backend_cases = len(BACKEND_FAULTS) * len(BACKEND_POSITIONS)
    cli_cases = 3 + 1
    assert (guard_cases, backend_cases, cli_cases) == (75, 10, 4)


# --- the command line: exit codes 4 (guard error) and 5 (model backend) ------------------------------------------


@pytest.mark.parametrize("fault", ["raise", "garbage_value", "die"])
def test_cli_reports_a_guard_fault_with_exit_4(fault: str, tmp_path: Path, hangs: Hangs,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`assistant run --json` in this process, so the fault sits in the same shared loaded guard the CLI uses."""
    from click.testing import CliRunner

    from assistant.cli.main import cli

    scenario = make_bot(tmp_path, "llama_guard", "model_output", script_for("model_output"))
    inject(scenario.bot, "llama_guard", "model_output", fault, hangs, monkeypatch)
    policy = tmp_path / "policy.yaml"
    monkeypatch.setattr("assistant.home.tiny_models_dir", lambda: TINY_DIR)
    script = f"scripted:{tmp_path / 'model.jsonl'}"
    args = ["run", USER_TEXT, "--policy", str(policy), "--json", "--model", script, "--db", str(tmp_path / "c.sqlite")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 4, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert lines[-1]["type"] == "refusal" and lines[-1]["guard_error"] is True
    assert "SECRET-ANSWER" not in result.output
    assert verify_audit_log(scenario.audit).intact


def test_cli_reports_a_dead_model_with_exit_5(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from assistant.cli.main import cli

    scenario = make_bot(tmp_path, "code_shield", "model_output", [], neighbours=False)  # no completion at all
    result = CliRunner().invoke(cli, ["run", USER_TEXT, "--policy", str(tmp_path / "policy.yaml"), "--json",
                                      "--model", f"scripted:{tmp_path / 'model.jsonl'}",
                                      "--db", str(tmp_path / "cli.sqlite")])
    assert result.exit_code == 5, result.output
    last = json.loads(result.output.splitlines()[-1])
    assert last["type"] == "error" and last["kind"] == "model_backend"
    assert scenario.bot is not None
