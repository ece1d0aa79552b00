"""What the judgement ledger costs per model call: `provenance.admit` over a thread against encoding its prompt.

    .venv/bin/python bench/provenance.py [--messages 40] [--repeats 200] [--json]

Builds a thread of `--messages` sealed messages (user, answers with raw text, tool calls and results, about 400
characters each), then times, per model call, the admission check (a sha256 of each message's visible fields) and the
Llama 3.1 prompt encoding it guards (the real tokenizer), each the median of `--repeats` runs. Prints both and their
ratio; a model call's prefill and generation, which follow, are not counted, so the ratio is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from typing import Any

from assistant.agent.provenance import admit, seal
from assistant.agent.state import message_from_dict
from guards.runtime.gate import Judgement
from model.messages import Message, ToolSpec
from model.prompt_format import encode_dialog
from model.tokenizer import get_tokenizer

FILLER = "The llama is a domesticated South American camelid, widely used as a meat and pack animal. " * 4


def sealed(message: dict[str, Any], path: str) -> dict[str, Any]:
    from assistant.agent.provenance import judged_text

    return seal(message, Judgement(path, judged_text(message), "pass", ()))


def thread(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        i = len(out)
        out.append(sealed({"role": "user", "content": f"Question {i}: {FILLER}"}, "user_text"))
        call = {"name": "fetch_page", "arguments": {"name": f"page{i}"}, "call_id": f"call-{i:024x}"}
        raw = "<|python_tag|>" + json.dumps({"name": "fetch_page", "parameters": {"name": f"page{i}"}})
        out.append(sealed({"role": "assistant", "content": "", "tool_calls": [call], "raw": raw}, "completion"))
        out.append(sealed({"role": "tool", "content": FILLER, "tool_name": "fetch_page"}, "tool_result"))
        out.append(sealed({"role": "assistant", "content": FILLER, "raw": FILLER}, "completion"))
    return out[:n]


def median_s(work: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    messages = thread(args.messages)
    tokenizer = get_tokenizer()
    spec = ToolSpec()

    def encode() -> None:
        encode_dialog([Message("system", "You are helpful."), *(message_from_dict(m) for m in messages)], spec,
                      today=date(2026, 12, 7), tokenizer=tokenizer)

    admit_s = median_s(lambda: admit(messages), args.repeats)
    encode_s = median_s(encode, max(1, args.repeats // 10))
    out = {"messages": len(messages), "admit_ms": round(admit_s * 1000, 4), "encode_ms": round(encode_s * 1000, 3),
           "admit_vs_encode": round(admit_s / encode_s, 4)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['messages']} messages: admit {out['admit_ms']} ms, encode {out['encode_ms']} ms per model call; "
              f"admit/encode = {out['admit_vs_encode']}")


if __name__ == "__main__":
    main()
