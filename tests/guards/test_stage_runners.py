"""The process-wide table of loaded guard models: one lock per model key (different models load side by side, one
model loads once), failed loads are not cached, and the table is bounded (issue 14.5)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from guards.runtime import runner as stage_runners


@pytest.fixture(autouse=True)
def empty_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage_runners, "_SHARED", type(stage_runners._SHARED)())
    monkeypatch.setattr(stage_runners, "_KEY_LOCKS", {})


def test_two_models_load_at_the_same_time() -> None:
    """Each load waits until the other one has started: with one lock for all loads this would never finish."""
    started = {"a": threading.Event(), "b": threading.Event()}

    def load(mine: str, other: str) -> str:
        started[mine].set()
        assert started[other].wait(10), "the loads ran one after the other"
        return mine

    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(stage_runners.shared, "llama_guard_weights", "a", lambda: load("a", "b"))
        b = pool.submit(stage_runners.shared, "prompt_guard", "b", lambda: load("b", "a"))
        assert (a.result(20), b.result(20)) == ("a", "b")


def test_one_model_loads_once_for_concurrent_users() -> None:
    calls = []
    gate = threading.Event()

    def load() -> object:
        calls.append(1)
        gate.wait(5)
        return object()

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(stage_runners.shared, "prompt_guard", "same", load) for _ in range(4)]
        gate.set()
        results = {id(f.result(20)) for f in futures}
    assert len(calls) == 1 and len(results) == 1


def test_a_failed_load_is_retried_and_the_table_is_bounded() -> None:
    def broken() -> object:
        raise OSError("disk gone")

    with pytest.raises(OSError):
        stage_runners.shared("prompt_guard", "x", broken)
    assert stage_runners.shared("prompt_guard", "x", lambda: "ok") == "ok"
    for i in range(stage_runners.MAX_SHARED + 5):
        stage_runners.shared("llama_guard", str(i), lambda i=i: i)
    assert len(stage_runners._SHARED) == stage_runners.MAX_SHARED
    assert ("prompt_guard", "x") not in stage_runners._SHARED  # the least recently used went first
    assert len(stage_runners._KEY_LOCKS) <= stage_runners.MAX_SHARED + 1
