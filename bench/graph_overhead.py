"""Per-step overhead of the agent graph itself: an instant scripted model, every guard off, a no-op tool.

    python bench/graph_overhead.py [--turns 20] [--calls 3] [--json]

A "step" is one model call of the agent loop (a turn with 3 tool calls has 4 steps). The figure includes LangGraph's
scheduling, the SQLite checkpoint written when a run ends (durability "exit"), prompt encoding of the growing
conversation, tool-call parsing and the event stream; `encode_ms_per_step` shows the prompt-encoding share. Nothing
here loads a model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POLICY = """\
version: 1
stages:
  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: false}}
agent: {max_steps: 50}
"""
CALL = '<|python_tag|>{"name": "noop", "parameters": {"x": 1}}<|eom_id|>'
ANSWER = "Done, all good.<|eot_id|>"


async def measure(turns: int, calls: int, workdir: Path) -> dict[str, float]:
    from assistant.api import Assistant
    from tools.custom import tool

    @tool
    def noop(x: int) -> str:
        """Do nothing.

        Args:
            x: ignored
        """
        return "ok"

    (workdir / "policy.yaml").write_text(POLICY, encoding="utf-8")
    script = workdir / "model.jsonl"
    per_turn = [CALL] * calls + [ANSWER]
    script.write_text("".join(json.dumps({"completion": c}) + "\n" for c in per_turn * (turns + 1)), encoding="utf-8")
    bot = Assistant.from_policy(workdir / "policy.yaml", tools=[noop], model=f"scripted:{script}",
                                db_path=workdir / "threads.sqlite")
    encode = bot.deps.encode
    await bot.arun("warm up", thread="warm")  # imports, first SQLite connection
    turn_ms: list[float] = []
    for i in range(turns):
        started = time.perf_counter()
        result = await bot.arun(f"turn {i}: please do the thing", thread="bench")
        turn_ms.append((time.perf_counter() - started) * 1000)
        assert result.text == "Done, all good.", result.events[-1]
    history = await bot.history("bench")
    from assistant.agent.state import message_from_dict

    messages = [message_from_dict(m) for m in history]
    started = time.perf_counter()
    for _ in range(10):
        encode(messages)
    encode_last_ms = (time.perf_counter() - started) * 100
    steps = calls + 1
    return {
        "turns": turns,
        "steps_per_turn": steps,
        "turn_ms_median": round(statistics.median(turn_ms), 2),
        "step_ms_median": round(statistics.median(turn_ms) / steps, 2),
        "step_ms_min": round(min(turn_ms) / steps, 2),  # least disturbed by other load on a shared machine
        "step_ms_first_turn": round(turn_ms[0] / steps, 2),
        "step_ms_last_turn": round(turn_ms[-1] / steps, 2),
        "encode_ms_largest_prompt": round(encode_last_ms, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ASSISTANT_HOME"] = tmp
        figures = asyncio.run(measure(args.turns, args.calls, Path(tmp)))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
