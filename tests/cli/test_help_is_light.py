"""`assistant --help` must be instant: it may not import torch, transformers or other heavy libraries."""

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "accelerate", "semgrep", "codeshield", "langgraph", "textual", "opentelemetry")


def _modules_loaded_by(args: list[str]) -> set[str]:
    probe = (
        "import sys, json\n"
        "from assistant.cli.main import cli\n"
        f"try:\n    cli.main(args={args!r}, standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_top_level_help_imports_nothing_heavy() -> None:
    loaded = _modules_loaded_by(["--help"])
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in ("chat", "run", "prompt", "policy", "guard", "tools", "audit", "eval", "dev"):
        assert f"  {name} " in out
