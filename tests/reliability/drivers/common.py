"""What the driver scripts share: a guarded Assistant on the tiny guards with a scripted main model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

POLICY = """\
version: 1
models:
  main: {{context_window: {context_window}, max_new_tokens: 64, timeout_s: 60}}
  llama_guard: {{source: {tiny}/llama-guard, variant: 8b, device: cpu, dtype: float32}}
  prompt_guard: {{source: {tiny}/prompt-guard, device: cpu}}
llama_guard: {{timeout_s: 120}}
prompt_guard: {{timeout_s: 120}}
stages:
  user_input: {{llama_guard: {{enabled: true}}, prompt_guard: {{enabled: true}}}}
  model_output: {{llama_guard: {{enabled: true}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: true}}}}
  code: {{code_shield: {{enabled: false}}}}
audit: {{path: audit.jsonl, texts: hash}}
tools:
  untrusted_content: allow
agent: {{max_steps: 4, max_tool_retries: 1}}
"""


def write_policy(workdir: Path, tiny_dir: Path, *, context_window: int = 8192) -> Path:
    path = workdir / "policy.yaml"
    path.write_text(POLICY.format(tiny=tiny_dir, context_window=context_window), encoding="utf-8")
    return path


def write_script(workdir: Path, completions: list[str], name: str = "model.jsonl") -> Path:
    path = workdir / name
    path.write_text("".join(json.dumps({"completion": c}) + "\n" for c in completions), encoding="utf-8")
    return path


def make_assistant(workdir: Path, tiny_dir: Path, tools: list[Any], script: Path, *, context_window: int = 8192):
    from assistant.api import Assistant

    return Assistant.from_policy(
        write_policy(workdir, tiny_dir, context_window=context_window), tools=tools, model=f"scripted:{script}",
        db_path=workdir / "threads.sqlite",
    )


def events_summary(result: Any) -> dict[str, Any]:
    last = result.events[-1] if result.events else None
    return {
        "last": last.to_json() if last is not None else None,
        "types": sorted({e.type for e in result.events}),
        "count": len(result.events),
        "chars": sum(len(json.dumps(e.to_json())) for e in result.events),
    }
