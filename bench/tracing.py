"""What tracing costs: CPU seconds per guarded tool turn with tracing on (exporting to a real local collector) over
tracing off (docs/OBSERVABILITY.md).

    python bench/tracing.py [--turns 20] [--rounds 3] [--collector URL] [--json]

Each measurement is a fresh process running the scenario of tests/telemetry/test_phoenix_e2e.py - a tool turn with
an approval: three model calls (the scripted main model), Llama Guard and Prompt Guard (the tiny trained ones, in
process) on the input, every completion, the proposed calls and the tool results - `--turns` times after two
warm-up turns. CPU time is the process's own (every thread: the agent, the guards, the exporter's background thread,
flushed before the clock stops); model loading is outside it. Off and on alternate, `--rounds` times; the medians are
compared. The collector is Arize Phoenix from $PHOENIX_VENV (scripts/phoenix_venv.sh) unless `--collector` names one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

POLICY = """\
version: 1
models:
  main: {source: tiny:llama-3.1-instruct, max_new_tokens: 64}
  llama_guard: {source: tiny:llama-guard, variant: 8b, device: cpu, dtype: float32}
  prompt_guard: {source: tiny:prompt-guard, device: cpu}
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: true, score: jailbreak}}
  model_output: {llama_guard: {enabled: true}, code_shield: {enabled: false}}
  tool_call: {llama_guard: {enabled: true}}
  tool_result: {prompt_guard: {enabled: true, score: injection}}
  code: {code_shield: {enabled: false}}
audit: {path: audit.jsonl, texts: hash}
tools:
  untrusted_content: ask
  custom: ["tests.telemetry.e2e_tools:fetch_page", "tests.telemetry.e2e_tools:send_email"]
"""
TURN = (
    '<|python_tag|>{"name": "fetch_page", "parameters": {"name": "news"}}<|eom_id|>',
    '<|python_tag|>{"name": "send_email", "parameters": {"to": "bob@example.test", "body": "hi"}}<|eom_id|>',
    "Done: I emailed Bob.<|eot_id|>",
)
WARM_UP = 2
PROBE = """\
import json, sys, time
from assistant.api import Assistant
from model.telemetry import export
turns = int(sys.argv[5])
bot = Assistant.from_policy(sys.argv[1], model="scripted:" + sys.argv[2], db_path=sys.argv[3], tiny_dir=sys.argv[4],
                            approve=lambda request: True)
for i in range(int(sys.argv[6])):
    bot.run("Read the news and email Bob", thread=f"warm-{i}")
export.flush()
cpu, wall = time.process_time(), time.perf_counter()
for i in range(turns):
    assert bot.run("Read the news and email Bob", thread=f"t-{i}").text == "Done: I emailed Bob."
export.flush()
print(json.dumps({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}))
"""


def measure(work: Path, turns: int, collector: str | None, models: Path) -> dict[str, float]:
    script = work / "model.jsonl"
    script.write_text("".join(json.dumps({"completion": c}) + "\n" for c in TURN * (turns + WARM_UP)))
    db = work / "threads.sqlite"
    db.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(ASSISTANT_HOME=str(work / "home"), PYTHONPATH=str(REPO))
    if collector:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector
    out = subprocess.run([sys.executable, "-c", PROBE, str(work / "policy.yaml"), str(script), str(db), str(models),
                          str(turns), str(WARM_UP)], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: v / turns for k, v in result.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.telemetry.phoenix import start_phoenix

    work = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    (work / "policy.yaml").write_text(POLICY, encoding="utf-8")
    phoenix = None if args.collector else start_phoenix(work)
    collector = args.collector or (phoenix.url if phoenix else None)
    try:
        off, on = [], []
        for _ in range(args.rounds):
            off.append(measure(work, args.turns, None, Path(args.models)))
            on.append(measure(work, args.turns, collector, Path(args.models)))
    finally:
        if phoenix is not None:
            phoenix.stop()
    cpu_off = statistics.median(m["cpu_s"] for m in off)
    cpu_on = statistics.median(m["cpu_s"] for m in on)
    return {
        "turns": args.turns, "rounds": args.rounds, "collector": "phoenix" if phoenix else collector,
        "cpu_s_per_turn_off": round(cpu_off, 4), "cpu_s_per_turn_on": round(cpu_on, 4),
        "cpu_on_over_off": round(cpu_on / cpu_off, 4),
        "wall_s_per_turn_off": round(statistics.median(m["wall_s"] for m in off), 4),
        "wall_s_per_turn_on": round(statistics.median(m["wall_s"] for m in on), 4),
        "cpu_s_per_turn_each_round": {"off": [round(m["cpu_s"], 4) for m in off],
                                      "on": [round(m["cpu_s"], 4) for m in on]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20, help="measured turns per process")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs (medians are taken)")
    parser.add_argument("--collector", help="an OTLP/HTTP collector's base URL instead of starting Phoenix")
    parser.add_argument("--models", default=str(REPO / ".cache" / "tiny-models"), help="the tiny models' directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CPU s per turn: off {result['cpu_s_per_turn_off']}, on {result['cpu_s_per_turn_on']} "
              f"-> on/off {result['cpu_on_over_off']} ({args.rounds} rounds of {args.turns} turns; "
              f"wall s per turn off {result['wall_s_per_turn_off']}, on {result['wall_s_per_turn_on']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
