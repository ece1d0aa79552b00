"""One guarded turn in this process, for kill -9 tests: prints each event as a JSON line and touches a marker file
when the turn reaches the point the test kills it at.

    python -m tests.reliability.drivers.agent_driver WORKDIR TINY_DIR MODE THREAD TEXT

MODE `stream`: the model streams its answer slowly (the marker is touched after the first delta); `tool`: the tool
blocks (the marker is touched when it starts); `ok`: a normal turn.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.reliability.drivers.common import make_assistant, write_script

CALL = '<|python_tag|>{"name": "fetch_page", "parameters": {"name": "slow"}}<|eom_id|>'


def main() -> None:
    workdir, tiny_dir, mode, thread, text = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    marker = workdir / f"marker-{mode}"
    from tools.custom import tool

    @tool
    def fetch_page(name: str) -> str:
        """Fetch a web page.

        Args:
            name: which page
        """
        with (workdir / "tool-runs.txt").open("a", encoding="utf-8") as log:
            log.write(f"{name}\n")
        if mode == "tool":
            marker.touch()
            time.sleep(3600)
        return f"page {name}"

    completions = {"stream": ["The answer streams slowly. " * 40 + "<|eot_id|>"],
                   "tool": [CALL, "Done.<|eot_id|>"], "ok": ["All good.<|eot_id|>"]}[mode]
    bot = make_assistant(workdir, tiny_dir, [fetch_page], write_script(workdir, completions, name=f"{mode}.jsonl"))
    if mode == "stream":
        original = bot.backend.stream

        async def slow(prompt_ids: list[int], params: Any) -> AsyncIterator[str]:
            async for delta in original(prompt_ids, params):
                yield delta
                marker.touch()
                await asyncio.sleep(0.05)

        bot.backend.stream = slow  # type: ignore[method-assign]

    async def run() -> None:
        async for event in bot.stream(text, thread=thread):
            print(json.dumps(event.to_json()), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
