"""Issue 11 item 5: leaving `Assistant.stream()` early - `break`, an exception in the loop, a cancelled task - ends
the turn cleanly and releases everything (the SQLite connection and the worker thread aiosqlite keeps), so the
process exits. Each case runs in a subprocess that must exit by itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

POLICY = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: false}}
audit: {path: audit.jsonl}
"""

DRIVER = """
import asyncio, sys, threading
from assistant.api import Assistant

mode, policy, script, db = sys.argv[1:5]
bot = Assistant.from_policy(policy, model=f"scripted:{script}", db_path=db)


async def main() -> None:
    if mode == "break":
        async for event in bot.stream("hello", thread="t"):
            break
    elif mode == "raise":
        try:
            async for event in bot.stream("hello", thread="t"):
                raise ValueError("the consumer failed")
        except ValueError:
            pass
    else:
        async def consume() -> None:
            async for event in bot.stream("hello", thread="t"):
                await asyncio.sleep(30)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(1)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    # the thread database is free again: a new turn on it runs to its end
    result = await bot.arun("again", thread="t")
    print("ANSWER", result.text, flush=True)


asyncio.run(main())
for t in threading.enumerate():  # aiosqlite's worker ends just after close() returns (it answers, then stops)
    if t is not threading.main_thread() and not t.daemon:
        t.join(timeout=5)
alive = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
print("THREADS", alive, flush=True)
"""


@pytest.mark.parametrize("mode", ["break", "raise", "cancel"])
def test_leaving_the_stream_early_ends_the_turn_and_the_process_exits(tmp_path: Path, mode: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    long_answer = "A long answer that streams in many small pieces. " * 8
    script = tmp_path / "model.jsonl"
    lines = [json.dumps({"completion": c}) for c in (long_answer + "<|eot_id|>", "Second.<|eot_id|>")]
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(driver), mode, str(policy), str(script), str(tmp_path / "threads.sqlite")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ASSISTANT_HOME": str(tmp_path / "home"),
             "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already running" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "ANSWER " in done.stdout  # a new turn on the same thread ran to its end
    assert "THREADS []" in done.stdout
