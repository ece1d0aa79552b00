"""The Python API in one runnable script: a guarded turn with a custom tool, offline.

    python examples/api_example.py

It uses `examples/policies/offline-smoke.yaml` (tiny local guard models, built on first use - no downloads) and a
scripted main model (`scripted:FILE.jsonl`: each model call replays the next line), so it runs anywhere. With real
weights, drop `model=` and the policy's `models.main` is used.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.agent.approval import APPROVE, Decision
from assistant.api import Assistant
from assistant.events import ApprovalRequested, Final, GuardVerdict, Refusal, TokenDelta, ToolResult
from tools.custom import tool

POLICY = Path(__file__).resolve().parent / "policies" / "offline-smoke.yaml"
# What the "model" says: first a call to our tool, then an answer using its result.
SCRIPT = [
    '<|python_tag|>{"name": "get_order_status", "parameters": {"order_id": "A-17"}}<|eom_id|>',
    "Your order A-17 has shipped and arrives on Friday.<|eot_id|>",
    "You're welcome!<|eot_id|>",
]


@tool
def get_order_status(order_id: str) -> str:
    """Look up the delivery status of an order.

    Args:
        order_id: the order number, for example A-17
    """
    return json.dumps({"order_id": order_id, "status": "shipped", "eta": "Friday"})


def approve(request: ApprovalRequested) -> Decision:
    """Called when a tool call needs a human; a real app would ask its user here."""
    print(f"[approval] {request.name}({request.arguments}): {request.reason} -> approved once")
    return APPROVE


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "model.jsonl"
        script.write_text("".join(json.dumps({"completion": c}) + "\n" for c in SCRIPT), encoding="utf-8")
        assistant = Assistant.from_policy(
            POLICY, tools=[get_order_status], model=f"scripted:{script}", approve=approve,
            db_path=Path(tmp) / "threads.sqlite",
        )
        # Stream the events of one turn: the TUI and the CLI consume exactly this.
        async for event in assistant.stream("Where is my order A-17?", thread="demo"):
            match event:
                case GuardVerdict(stage=stage, guard=guard, decision=decision):
                    print(f"[guard] {stage:<12} {guard:<12} {decision}")
                case ToolResult(name=name, output=output, blocked=blocked):
                    print(f"[tool] {name} -> {'(blocked)' if blocked else output}")
                case TokenDelta(text=text):
                    print(text, end="", flush=True)
                case Final():
                    print()
                case Refusal(message=message, guard_error=guard_error):
                    print(f"[refused{' - guard error' if guard_error else ''}] {message}")
                case _:
                    pass
        # The same thread again, collected into a Result (text, events, verdicts, tool calls, refusal, error).
        result = await assistant.arun("Thanks!", thread="demo")
        print(f"second turn: {result.text!r} refused={result.refused} verdicts={len(result.verdicts)}")


if __name__ == "__main__":
    asyncio.run(main())
