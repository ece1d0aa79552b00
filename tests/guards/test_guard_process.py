"""Guard models in processes of their own (`models.llama_guard.process`, `models.prompt_guard.process`): the same
verdicts as in the agent's process, and every failure of the child a fail-closed guard error."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guards.llama_guard.runner import LlamaGuardRunner
from guards.policy import parse_policy_text
from guards.prompt_guard.runner import PromptGuardRunner
from guards.runtime.pipeline import GuardPipeline
from guards.runtime.process import GuardProcess

POLICY = """\
version: 1
models:
  llama_guard: {{source: {llama_guard}, device: cpu, dtype: float32, process: true, threads: 1}}
  prompt_guard: {{source: {prompt_guard}, process: true, threads: 1}}
llama_guard: {{timeout_s: 120}}  # about the processes, not their speed: a loaded machine must not time them out
prompt_guard: {{timeout_s: 120}}
stages:
  user_input: {{llama_guard: {{enabled: true}}, prompt_guard: {{enabled: true, score: jailbreak}}}}
"""


@pytest.fixture(scope="module")
def policy(tiny_guard_dirs: dict[str, Path]) -> object:
    return parse_policy_text(
        POLICY.format(llama_guard=tiny_guard_dirs["llama-guard"], prompt_guard=tiny_guard_dirs["prompt-guard"])
    )


@pytest.fixture(scope="module")
def pipeline(policy: object) -> Iterator[GuardPipeline]:
    pipe = GuardPipeline.from_policy(policy, audit=False)
    yield pipe
    for name in ("llama_guard", "prompt_guard"):
        guard = pipe.runners[name].load()
        if isinstance(guard, GuardProcess):
            guard.close()


def check(pipeline: GuardPipeline, text: str) -> object:
    return asyncio.run(pipeline.check("user_input", text))


def test_the_guards_run_in_child_processes_and_decide_as_in_process(
    pipeline: GuardPipeline, policy: object, tiny_guard_dirs: dict[str, Path]
) -> None:
    safe = check(pipeline, "please summarize the meeting notes")  # starts both children at once
    assert safe.decision == "allow" and all(v.error is None for v in safe.verdicts)
    llama, prompt = pipeline.runners["llama_guard"].load(), pipeline.runners["prompt_guard"].load()
    assert isinstance(llama, GuardProcess) and isinstance(prompt, GuardProcess)
    assert {llama.pid, prompt.pid}.isdisjoint({os.getpid(), None})
    unsafe = check(pipeline, "tell me about zyxtrigger")
    by_guard = {v.guard: v for v in unsafe.verdicts}
    assert unsafe.decision == "block" and by_guard["llama_guard"].categories == ("S9",)
    jailbreak = check(pipeline, "please jbtrigger now")
    assert jailbreak.decision == "block" and jailbreak.verdicts[0].guard == "prompt_guard"

    # the same scores as the same guards loaded in this process
    dirs = {"llama_guard": tiny_guard_dirs["llama-guard"], "prompt_guard": tiny_guard_dirs["prompt-guard"]}
    local = parse_policy_text(POLICY.format(**dirs).replace("process: true, threads: 1", "process: false"))
    local_llama = LlamaGuardRunner(local, str(tiny_guard_dirs["llama-guard"])).load()
    local_prompt = PromptGuardRunner(local, str(tiny_guard_dirs["prompt-guard"])).load()
    for text in ("tell me about zyxtrigger", "what is 2+2?"):
        assert llama.check_text(text).score == pytest.approx(local_llama.check_text(text).score, abs=1e-6)
        assert prompt.score(text).score == pytest.approx(local_prompt.score(text).score, abs=1e-6)

    stats = llama.stats()
    assert stats["tokens"] > 0 and stats["cpu_s"] > 0


def test_a_child_that_dies_mid_check_is_a_guard_error_then_it_is_replaced(pipeline: GuardPipeline) -> None:
    guard = pipeline.runners["llama_guard"].load()
    starts = guard.starts

    async def killed_during_check() -> object:
        checking = asyncio.ensure_future(pipeline.check("user_input", "a long text " * 2000))
        await asyncio.sleep(0.05)
        os.kill(guard.pid, signal.SIGKILL)
        return await checking

    result = asyncio.run(killed_during_check())
    llama = next(v for v in result.verdicts if v.guard == "llama_guard")
    assert result.decision == "block" and llama.decision == "block"
    assert llama.error is not None and "process exited" in llama.error  # a guard error, not a policy verdict
    again = check(pipeline, "tell me about zyxtrigger")
    assert again.decision == "block" and all(v.error is None for v in again.verdicts)
    assert guard.starts == starts + 1


def test_an_exception_in_the_child_keeps_its_type_and_message(pipeline: GuardPipeline) -> None:
    from guards.errors import GuardError

    guard = pipeline.runners["prompt_guard"].load()
    with pytest.raises(GuardError, match="ValueError: unknown Prompt Guard score 'toxicity'"):
        guard.score("hello", "toxicity")
    assert guard.score("hello").score < 0.5  # the child serves on


def test_a_model_that_cannot_load_fails_closed_with_its_reason(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-guard"
    text = POLICY.format(llama_guard=missing, prompt_guard=missing).replace(
        "prompt_guard: {enabled: true, score: jailbreak}", "prompt_guard: {enabled: false}"
    )
    policy = parse_policy_text(text)
    started = time.perf_counter()
    result = asyncio.run(GuardPipeline.from_policy(policy, audit=False).check("user_input", "hello"))
    assert time.perf_counter() - started < 60
    assert result.decision == "block"
    assert [v.guard for v in result.verdicts] == ["llama_guard"]
    assert result.verdicts[0].error is not None and str(missing) in result.verdicts[0].error


def test_the_child_writes_nothing_to_the_terminal(policy: object, capfd: pytest.CaptureFixture[str]) -> None:
    process = GuardProcess("guards.runtime.process:resolve", {"ref": "builtins:print"}, name="printer")
    try:
        process.call("__call__", "this must not reach the terminal")  # print() in the child
    finally:
        process.close()
    out, err = capfd.readouterr()
    assert "must not reach" not in out + err


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("prompt_guard: {threads: 2}", "threads sets the torch threads of the guard's own process: it needs process"),
        (
            "llama_guard: {backend: openai, base_url: 'http://localhost:1/v1', process: true}",
            "backend: openai has no local model",
        ),
        ("llama_guard: {process: 'yes'}", "process"),
    ],
)
def test_the_policy_keys_are_validated(models: str, message: str) -> None:
    with pytest.raises(Exception, match=message):
        parse_policy_text(f"version: 1\nmodels: {{{models}}}\n")


def test_a_child_that_crashes_while_starting_says_why() -> None:
    from guards.errors import GuardError

    process = GuardProcess("faulthandler:_sigsegv", {}, name="crashing guard")
    with pytest.raises(GuardError, match="the crashing guard process exited while starting: Fatal Python error"):
        process.start()


def test_large_texts_from_many_threads_each_get_their_own_answer() -> None:
    from concurrent.futures import ThreadPoolExecutor

    process = GuardProcess("guards.runtime.process:resolve", {"ref": "builtins:len"}, name="length")
    try:  # each text is far larger than a pipe's buffer: writes wait while the child answers earlier calls
        with ThreadPoolExecutor(4) as pool:
            sizes = list(pool.map(lambda n: process.call("__call__", "x" * n), [3_000_000 + i for i in range(8)]))
    finally:
        process.close()
    assert sizes == [3_000_000 + i for i in range(8)]
