"""What judging MCP tool definitions costs at start: the policy's servers started with their definitions vetted
(tools.mcp.vetting: Prompt Guard's injection score and Llama Guard on each whole definition, on the gate's
tool_definition path) over the same start without, with the tiny guards of the tests; median of N starts.

    .venv/bin/python bench/mcp_vetting.py [--repeat 5] [--json]

Servers: @modelcontextprotocol/server-filesystem (npm, `make mcp-servers`; 14 tools) and mcp-server-time (PyPI).
The tiny models are built by the tests (`.cache/tiny-models`). The definitions' token counts (Llama 3 tokenizer)
are printed so the cost with the real guards can be estimated: each definition is one Llama Guard prefill of the
template plus its tokens, and one Prompt Guard pass per 512-token window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.models import guard_model_dirs  # noqa: E402
from guards.policy import Policy, parse_policy_text  # noqa: E402
from guards.runtime.gate import judge  # noqa: E402
from guards.runtime.pipeline import GuardPipeline  # noqa: E402
from model.tokenizer import get_tokenizer  # noqa: E402
from tools.mcp import start_mcp_tools  # noqa: E402
from tools.mcp.vetting import DEFINITION_PATH, Vetting, definition_text  # noqa: E402

FS_SERVER = ROOT / ".cache/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
TINY_DIR = ROOT / ".cache" / "tiny-models"
POLICY = {
    "version": 1,
    "models": {"llama_guard": {"source": "tiny:llama-guard", "variant": "8b", "device": "cpu", "dtype": "float32"},
               "prompt_guard": {"source": "tiny:prompt-guard", "device": "cpu"}},
    "stages": {"user_input": {"llama_guard": {"enabled": False}, "prompt_guard": {"enabled": False}},
               "model_output": {"llama_guard": {"enabled": True}, "code_shield": {"enabled": False}},
               "tool_result": {"prompt_guard": {"enabled": True, "score": "injection"}}},
}


def policy_for(folder: str, audit: Path) -> Policy:
    servers = [
        {"name": "files", "command": "node", "args": [str(FS_SERVER), folder], "on_change": "allow"},
        {"name": "time", "command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
         "on_change": "allow"},
    ]
    return parse_policy_text(json.dumps({**POLICY, "audit": {"path": str(audit)}, "tools": {"mcp": servers}}))


def timed_start(policy: Policy, vetting: Vetting | None) -> tuple[float, int, int]:
    began = time.perf_counter()
    toolset = start_mcp_tools(policy.tools, vetting=vetting)
    elapsed = (time.perf_counter() - began) * 1000
    offered, withheld = len(toolset.tools), len(toolset.withheld)
    toolset.close()
    return elapsed, offered, withheld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        policy = policy_for(folder, Path(folder) / "audit.jsonl")
        pipeline = GuardPipeline.from_policy(policy, model_dirs=guard_model_dirs(policy, tiny_dir=TINY_DIR))
        vetting = Vetting(pipeline, {})
        with start_mcp_tools(policy.tools) as toolset:  # the definitions, and the guards loaded before timing
            texts = [definition_text(tool) for tool in toolset.tools]  # type: ignore[arg-type]
            asyncio.run(judge(pipeline, DEFINITION_PATH, texts[0]))
        plain, vetted, offered = [], [], 0
        for _ in range(args.repeat):
            plain.append(timed_start(policy, None)[0])
            ms, offered, _ = timed_start(policy, vetting)
            vetted.append(ms)
    tokenizer = get_tokenizer()
    tokens = [len(tokenizer.encode(text)) for text in texts]
    row = {
        "definitions": len(texts), "offered": offered,
        "definition_tokens_total": sum(tokens), "definition_tokens_max": max(tokens),
        "definition_tokens_median": round(statistics.median(tokens)),
        "start_ms_median_plain": round(statistics.median(plain)),
        "start_ms_median_vetted": round(statistics.median(vetted)),
        "vetting_ms_per_definition": round((statistics.median(vetted) - statistics.median(plain)) / len(texts), 1),
        "vetted_over_plain": round(statistics.median(vetted) / statistics.median(plain), 2),
    }
    if args.json:
        print(json.dumps(row, indent=2))
        return
    for key, value in row.items():
        print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
