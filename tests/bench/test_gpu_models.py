"""bench/gpu_models.py on small configs (CPU): it runs on its own, prints its keys, and stays self-contained (a lent
GPU machine has torch and transformers and none of this project). Timings are not asserted (shared machine)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_models.py"
KEYS = ("ttft_checked_vs_unguarded", "turn_vs_unguarded", "ttft_checked_vs_ogx", "turn_vs_ogx",
        "ttft_checked_vs_llamafirewall", "turn_vs_llamafirewall")
MODES = ("unguarded", "ours", "ogx", "llamafirewall")


def test_imports_only_torch_transformers_and_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    nodes = list(ast.walk(tree))
    roots = {alias.name.split(".")[0] for node in nodes if isinstance(node, ast.Import) for alias in node.names}
    roots |= {node.module.split(".")[0] for node in nodes if isinstance(node, ast.ImportFrom) and node.module}
    assert roots - {"__future__", "torch", "transformers"} <= set(sys.stdlib_module_names), roots


def test_tiny_run_prints_every_key_and_schedule(tmp_path: Path) -> None:
    # Run from an empty folder with nothing of the project on the path, as on the GPU machine.
    done = subprocess.run([sys.executable, "-W", "ignore", str(SCRIPT), "--tiny", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    for suffix in ("", "_lg1b"):
        for key in KEYS:
            assert summary[key + suffix] > 0, key + suffix
        schedule = summary["schedules" + suffix]
        for mode in MODES:
            assert 0 < schedule[mode]["ttft_checked_s"] <= schedule[mode]["turn_s"] + 1e-9, mode
        # LlamaFirewall shows the answer only once it is checked whole; OGX holds it until its first batch's check.
        assert schedule["llamafirewall"]["ttft_checked_s"] == schedule["llamafirewall"]["turn_s"]
        assert schedule["ogx"]["ttft_checked_s"] > schedule["unguarded"]["ttft_checked_s"]
    assert summary["tiny"] is True and summary["device"].startswith("cpu")
    assert summary["times_s"]["main_prefill_input"] > 0
