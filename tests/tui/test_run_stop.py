"""`assistant run` stops like esc in the chat: SIGINT mid-answer -> exit 130, a last `error` event of kind
`cancelled`, and the thread keeps the answer as far as it was printed, marked stopped (the real CLI in a subprocess,
keyed scripted model with a pause per piece, tiny guards)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_agent_stop_and_attach import session

from assistant.api import Assistant


def test_sigint_stops_the_turn(tmp_path: Path) -> None:
    chat = session(tmp_path)  # writes the policy and the keyed script
    policy, script = chat.policy_path, tmp_path / "keyed.jsonl"
    db = tmp_path / "threads.sqlite"
    env = {**os.environ, "ASSISTANT_HOME": str(tmp_path / "home"), "ASSISTANT_TINY_MODELS": str(chat.tiny_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "run", "be slow please", "--policy", str(policy), "--model",
         f"scripted-keyed:{script}", "--json", "--thread", "t1", "--db", str(db)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[dict] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until the first piece of the answer was printed
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, f"the run ended early: {lines[-2:]} {proc.stderr.read()}"  # type: ignore[union-attr]
        lines.append(json.loads(line))
        if lines[-1]["type"] == "token":
            break
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out = proc.stdout.read()  # type: ignore[union-attr]  # the same reader: readline may have buffered more lines
    err = proc.stderr.read()  # type: ignore[union-attr]
    proc.wait(timeout=30)
    elapsed = time.monotonic() - stopped_at
    lines += [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 130, err
    assert lines[-1]["type"] == "error" and lines[-1]["kind"] == "cancelled"
    assert elapsed < 10
    printed = "".join(e["text"] for e in lines if e["type"] == "token")
    assert printed.startswith("word0") and "word119" not in printed
    assistant = Assistant.from_policy(policy, model=f"scripted-keyed:{script}", db_path=db, tiny_dir=chat.tiny_dir)
    history = asyncio.run(assistant.history("t1"))
    assert history == [{"role": "user", "content": "be slow please"},
                       {"role": "assistant", "content": printed, "stopped": True}]
