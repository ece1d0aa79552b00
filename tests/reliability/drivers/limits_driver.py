"""Run limit scenarios in this process, printing one JSON line each: the outcome and the peak memory so far
(the kernel's high-water mark of this process's memory, VmHWM, which only grows, so each line bounds everything before
it; not ru_maxrss, which survives exec and so starts at the size of the test worker that launched the driver).

    python -m tests.reliability.drivers.limits_driver WORKDIR TINY_DIR SCENARIO [SCENARIO ...]

Scenarios: huge_message (10 MB user message), huge_tool_result (~100k tokens from a tool), long_conversation (turns
far beyond the context window), many_tool_calls (1,000 calls in one completion).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.reliability.drivers.common import events_summary, make_assistant, write_script

HUGE_TOOL_WORDS = 100_000  # "word " is one token each: ~100k tokens


def peak_rss_kib() -> int:
    """VmHWM from /proc/self/status: the peak resident memory of this process image since its exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def run(scenario: str, workdir: Path, tiny_dir: Path) -> dict:
    from tools.custom import tool

    calls: list[str] = []

    @tool
    def fetch_page(name: str) -> str:
        """Fetch a web page.

        Args:
            name: which page
        """
        calls.append(name)
        return " word" * HUGE_TOOL_WORDS if name == "huge" else f"page {name}"

    out: dict = {"scenario": scenario}
    if scenario == "huge_message":
        bot = make_assistant(workdir, tiny_dir, [fetch_page], write_script(workdir, ["Hi there.<|eot_id|>"]))
        first = bot.run("hello", thread="t")
        result = bot.run("x" * 10_000_000, thread="t")
        import asyncio

        history = asyncio.run(bot.history("t"))
        out.update(
            first=events_summary(first),
            result=events_summary(result),
            history_len=len(history),
            history_chars=sum(len(m.get("content", "")) for m in history),
        )
    elif scenario == "huge_tool_result":
        call = '<|python_tag|>{"name": "fetch_page", "parameters": {"name": "huge"}}<|eom_id|>'
        bot = make_assistant(workdir, tiny_dir, [fetch_page], write_script(workdir, [call, "Summary.<|eot_id|>"]))
        result = bot.run("summarise the huge page", thread="t")
        out.update(result=events_summary(result), prompt_tokens=bot.backend.stats.last_prompt_tokens)
    elif scenario == "long_conversation":
        turns = 40
        answers = [f"Answer {i}: " + "blah " * 60 + "<|eot_id|>" for i in range(turns)]
        bot = make_assistant(workdir, tiny_dir, [fetch_page], write_script(workdir, answers), context_window=1024)
        outcomes, max_prompt = [], 0
        for i in range(turns):
            result = bot.run(f"Question {i}: " + "tell me more " * 20, thread="t")
            outcomes.append(type(result.events[-1]).__name__)
            max_prompt = max(max_prompt, bot.backend.stats.last_prompt_tokens)
        import asyncio

        history = asyncio.run(bot.history("t"))
        out.update(
            outcomes=outcomes,
            max_prompt_tokens=max_prompt,
            history_len=len(history),
            notices=sum("context_trimmed" in json.dumps(e.to_json()) for e in result.events),
        )
    elif scenario == "many_tool_calls":
        calls_text = ";".join(json.dumps({"name": "fetch_page", "parameters": {"name": str(i)}}) for i in range(1000))
        script = write_script(workdir, ["<|python_tag|>" + calls_text + "<|eom_id|>", "Done.<|eot_id|>"])
        bot = make_assistant(workdir, tiny_dir, [fetch_page], script)
        result = bot.run("fetch everything", thread="t")
        out.update(result=events_summary(result), tools_ran=len(calls))
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    return out


def main() -> None:
    workdir, tiny_dir = Path(sys.argv[1]), Path(sys.argv[2])
    for scenario in sys.argv[3:]:
        started = time.perf_counter()
        (workdir / scenario).mkdir(parents=True, exist_ok=True)
        out = run(scenario, workdir / scenario, tiny_dir)
        out["seconds"] = round(time.perf_counter() - started, 2)
        out["peak_rss_mb"] = round(peak_rss_kib() / 1024, 1)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
