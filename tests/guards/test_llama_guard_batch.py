"""`llama_guard.batch_checks`: checks of several conversations waiting at once in the guard process are scored in one
forward pass, each on its own cached conversation, with the same decisions and scores as one at a time; each call
fails on its own; the child never reorders calls."""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from guards.errors import GuardError
from guards.llama_guard import guard as guard_module
from guards.llama_guard.batch import forward_batch, plan_batches
from guards.llama_guard.guard import LlamaGuard
from guards.llama_guard.prompt import as_turn
from guards.llama_guard.runner import LlamaGuardRunner
from guards.policy import parse_policy_text, policy_warnings
from guards.runtime.child import Inbox, count_forward_tokens
from guards.runtime.process import Batching, GuardProcess, write_frame

CONVERSATIONS = [
    [("user", "please write a story about the garden")],
    [("user", "tell me about the house near the road"), ("assistant", "The house is old and the road is long."),
     ("user", "and what about the long river that runs beside it, past the mill and the bridge?")],
    [],
    [("user", "summarize the meeting notes"), ("assistant", "The meeting was short.")],
]
ANSWERS = ["We walked there after the meeting", "then zyxtrigger we read the report", "The water is warm.",
           "All of it was agreed"]


@pytest.fixture(scope="module")
def scratch(tiny_guard_dirs: dict[str, Path]) -> LlamaGuard:
    return LlamaGuard.load(tiny_guard_dirs["llama-guard"], dtype="float32", use_prefix_cache=False)


def fresh(scratch: LlamaGuard) -> LlamaGuard:
    return LlamaGuard(scratch.model, tokenizer=scratch.tokenizer, categories=scratch.categories,
                      cached_conversations=4)


def calls_for(step: int) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Each conversation's answer so far, as streaming checks send it (a role of its own for the empty one)."""
    calls = []
    for conversation, answer in zip(CONVERSATIONS, ANSWERS, strict=True):
        text = " ".join([answer] * (step + 1))
        role = "user" if not conversation else "assistant"
        calls.append(((text,), {"role": role, "conversation": conversation}))
    return calls


def similar_calls() -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Four checks of the same size: one batch."""
    return [((f"The {noun} is old and the road is long.",),
             {"role": "assistant", "conversation": [("user", f"tell me about the {noun} near the road")]})
            for noun in ("garden", "house", "river", "bridge")]


def test_a_batch_decides_and_scores_as_one_check_at_a_time(
    scratch: LlamaGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    real = guard_module.forward_batch

    def counted(model: Any, cache_kw: str, rows: Any, pad_id: int) -> Any:
        batches.append(len(rows))
        return real(model, cache_kw, rows, pad_id)

    monkeypatch.setattr(guard_module, "forward_batch", counted)
    batched, alone = fresh(scratch), fresh(scratch)
    head = len(batched._prefixes["agent"].ids)
    for step in range(3):  # the second and third batches reuse the caches the batches before split back out
        calls = calls_for(step)
        got = batched.check_text_batch(calls)
        for (args, kwargs), result in zip(calls, got, strict=True):
            want = alone.check_text(*args, **kwargs)
            reference = scratch.check_text(*args, **kwargs)  # no cache at all
            assert isinstance(result, type(want)), result
            assert (result.unsafe, result.categories) == (want.unsafe, want.categories) == (
                reference.unsafe, reference.categories)
            assert result.score == pytest.approx(want.score, abs=1e-4)
            assert result.score == pytest.approx(reference.score, abs=1e-4)
            # the same reuse as one at a time: the caches split back out of the last batch serve the next
            assert (result.prompt_tokens, result.cached_tokens) == (want.prompt_tokens, want.cached_tokens)
        if step:
            assert max(result.cached_tokens for result in got) > head + 40
    assert any(result.unsafe for result in got) and not all(result.unsafe for result in got)
    assert batches and max(batches) >= 2  # checks of similar sizes went together, the others alone


def test_only_checks_of_similar_sizes_are_batched() -> None:
    # (new tokens, cached tokens): a 500-token tool result's check does not pad four 50-token chunks' checks
    sizes = [(50, 600), (500, 1500), (52, 620), (48, 580), (50, 610)]
    assert plan_batches(sizes) == [[3, 0, 4, 2], [1]]
    assert plan_batches([(50, 300), (50, 2100)]) == [[0], [1]]  # every row would attend over 2,100 keys
    assert plan_batches([(50, 600)] * 8) == [list(range(8))]


def test_one_calls_failure_fails_only_that_call(scratch: LlamaGuard) -> None:
    guard = fresh(scratch)
    calls = calls_for(0)
    calls.insert(1, (("hello",), {"role": "judge"}))  # not a role Llama Guard checks
    got = guard.check_text_batch(calls)
    assert isinstance(got[1], ValueError)
    assert all(not isinstance(result, Exception) for index, result in enumerate(got) if index != 1)


def test_a_failed_pass_fails_every_check_in_it(scratch: LlamaGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(guard_module, "forward_batch", broken)
    got = fresh(scratch).check_text_batch(similar_calls())
    assert all(isinstance(result, RuntimeError) for result in got)


def test_non_finite_logits_fail_that_check_closed(scratch: LlamaGuard, monkeypatch: pytest.MonkeyPatch) -> None:
    real = guard_module.forward_batch

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        logits, caches = real(*args, **kwargs)
        logits[2] = float("nan")
        return logits, caches

    monkeypatch.setattr(guard_module, "forward_batch", poisoned)
    got = fresh(scratch).check_text_batch(similar_calls())
    assert isinstance(got[2], GuardError) and "non-finite" in str(got[2])
    assert all(not isinstance(result, Exception) for index, result in enumerate(got) if index != 2)


def test_llama_guard_4_checks_run_one_at_a_time(tiny_guard_dirs: dict[str, Path]) -> None:
    guard = LlamaGuard.load(tiny_guard_dirs["llama-guard-4"], dtype="float32", variant="4")
    calls = calls_for(0)
    got = guard.check_text_batch(calls)
    for (args, kwargs), result in zip(calls, got, strict=True):
        want = guard.check_text(*args, **kwargs)
        assert (result.unsafe, result.score) == (want.unsafe, pytest.approx(want.score, abs=1e-5))


def test_the_inbox_batches_waiting_calls_of_one_kind_without_reordering() -> None:
    stream = io.BytesIO()
    for number, ref in enumerate(["check_text", "check_text", "check_text", "__stats__", "check_text"]):
        write_frame(stream, (number, ref, (), {}, None))
    stream.seek(0)
    inbox = Inbox(stream)
    first = inbox.take()
    joined = inbox.join("check_text", Batching(max_calls=2, wait_s=0.5))
    assert [first[0], *(r[0] for r in joined)] == [0, 1]  # at most two together
    assert [r[0] for r in inbox.join("check_text", Batching(max_calls=8))] == [2]  # stops at the stats call
    assert [inbox.take()[0], inbox.take()[0]] == [3, 4]
    with pytest.raises(EOFError):
        inbox.take()


def test_a_guard_process_batches_concurrent_checks(tiny_guard_dirs: dict[str, Path], scratch: LlamaGuard) -> None:
    policy = parse_policy_text(f"""\
version: 1
models:
  llama_guard: {{source: {tiny_guard_dirs["llama-guard"]}, dtype: float32, process: true, threads: 1}}
llama_guard: {{cached_conversations: 4, batch_checks: 4, batch_wait_ms: 1000}}
""")
    process = LlamaGuardRunner(policy, str(tiny_guard_dirs["llama-guard"])).load()
    assert isinstance(process, GuardProcess) and process.batching == Batching(4, 1.0)
    try:
        calls = calls_for(1)
        start = threading.Barrier(len(calls))

        def one(call: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
            start.wait()
            return process.check_text(*call[0], **call[1])

        with ThreadPoolExecutor(len(calls)) as pool:
            got = list(pool.map(one, calls))
        stats = process.stats()
        assert stats["batched_calls"] == len(calls)  # the first waited for the other three: one pass
        for (args, kwargs), result in zip(calls, got, strict=True):
            want = scratch.check_text(*args, **kwargs)
            assert (result.unsafe, result.categories) == (want.unsafe, want.categories)
            assert result.score == pytest.approx(want.score, abs=1e-4)
        assert process.pid not in (None, os.getpid())
    finally:
        process.close()


class BrokenBatcher:
    """A guard whose batch method raises (built in the child: this module is on its path)."""

    batched_methods: ClassVar[dict[str, str]] = {"check_text": "check_text_batch"}

    def check_text(self, text: str) -> str:
        return f"checked {text}"

    def check_text_batch(self, calls: list[Any]) -> list[Any]:
        raise RuntimeError("the batch broke")


def test_a_batch_method_that_raises_fails_every_call_in_it_closed() -> None:
    process = GuardProcess(f"{__name__}:BrokenBatcher", {}, name="broken", batching=Batching(3, 1.0))
    try:
        start = threading.Barrier(3)

        def one(text: str) -> Any:
            start.wait()
            try:
                return process.check_text(text)
            except GuardError as exc:
                return exc

        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(one, ["a", "b", "c"]))
        assert all(isinstance(r, GuardError) and "the batch broke" in str(r) for r in got), got
        assert process.stats()["batched_calls"] == 3
        assert process.check_text("alone") == "checked alone"  # a call alone is answered by the plain method
    finally:
        process.close()


def test_the_tokens_counted_are_text_not_padding(tiny_guard_dirs: dict[str, Path]) -> None:
    guard = LlamaGuard.load(tiny_guard_dirs["llama-guard"], dtype="float32")  # its own model: the hook stays on it
    counter = [0]
    count_forward_tokens(guard.model, counter)
    rows = []
    with torch.inference_mode():
        for text in ("short", "a much longer text than the other one, with many more words in it"):
            ids = guard.prompt_ids(as_turns(text))
            cache, cached = guard._reusable_cache("user", guard._prefixes["user"], ids)
            rows.append((cache, ids[cached:]))
        before = counter[0]
        forward_batch(guard.model, guard._cache_kw, rows, pad_id=guard.safe_id)
    assert counter[0] - before == sum(len(new) for _, new in rows)


def as_turns(text: str) -> list[Any]:
    return [as_turn("user", text)]


def test_batching_the_policy_cannot_use_is_warned(tiny_guard_dirs: dict[str, Path]) -> None:
    in_process = parse_policy_text("version: 1\nllama_guard: {batch_checks: 4}\n")
    assert any("llama_guard.batch_checks: has no effect" in w for w in policy_warnings(in_process))
    guard4 = parse_policy_text("version: 1\nmodels: {llama_guard: {source: x, variant: '4', process: true}}\n"
                               "llama_guard: {batch_checks: 4}\n")
    assert any("Llama Guard 4" in w for w in policy_warnings(guard4))
