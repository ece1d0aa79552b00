"""Llama Guard and Prompt Guard load side by side in worker threads (as the stage runners do) in a fresh process.

transformers resolves its classes lazily and that is not thread-safe: before model.hf_import, one of the two loads
could fail with `ImportError: cannot import name 'AutoModelForCausalLM'`, which failed every first turn closed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, threading
from guards.llama_guard import LlamaGuard
from guards.prompt_guard import PromptGuard

errors = []
start = threading.Barrier(2)

def load(fn, path):
    start.wait()
    try:
        fn(path)
    except Exception as exc:  # the test reports any failure of either load
        errors.append(repr(exc))

threads = [threading.Thread(target=load, args=(LlamaGuard.load, sys.argv[1])),
           threading.Thread(target=load, args=(PromptGuard.load, sys.argv[2]))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("ERRORS:" + "|".join(errors))
"""


def test_both_guards_load_side_by_side_in_a_fresh_process(tiny_guard_dirs: dict[str, Path]) -> None:
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):  # the race showed in about one fresh process in two
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tiny_guard_dirs["llama-guard"]), str(tiny_guard_dirs["prompt-guard-2"])],
            cwd=root, capture_output=True, text=True, timeout=300, check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "ERRORS:\n" in done.stdout or done.stdout.strip() == "ERRORS:", done.stdout
