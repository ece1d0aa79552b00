"""Run the scenario through the real guarded agent (`assistant.api.Assistant`) in each mode and record every turn.

Modes (same models, same scenario, same policy thresholds):
- `unguarded`: no guard at any stage; main-model KV cache reused (the best the model alone can do).
- `reference`: the peers' way - guards one after another, Llama Guard generating its verdict text over the whole
  prompt, no KV-cache reuse (every step re-encodes the whole conversation), the answer checked once complete.
- `optimized`: ours - concurrent guards, one-forward Llama Guard with its precomputed prefix (and the last check's
  cache reused), KV-cache reuse, generation started speculatively while the input and tool-result guards run,
  streaming moderation in chunks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.scenario import UNSAFE, Scenario, Sizes, fetch_page_tool

MODES = ("unguarded", "reference", "optimized")
SEVERITY = {"allow": 0, "log": 1, "warn": 2, "ask": 3, "block": 4}

_GUARDED_STAGES = """\
  user_input: {{llama_guard: {{enabled: {g}}}, prompt_guard: {{enabled: {g}, score: jailbreak}}}}
  model_output: {{llama_guard: {{enabled: {g}}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: {g}, score: injection}}}}
  code: {{code_shield: {{enabled: false}}}}
"""

POLICY = """\
version: 1
models:
  main: {{source: {main}, device: cpu, dtype: float32, context_window: 16384, max_new_tokens: 2048}}
  llama_guard: {{source: {llama_guard}, variant: 8b, device: cpu, dtype: float32}}
  prompt_guard: {{source: {prompt_guard}, device: cpu}}
llama_guard: {{timeout_s: 600}}
prompt_guard: {{timeout_s: 600}}
stages:
{stages}audit: {{path: {audit}, texts: hash}}
tools:
  untrusted_content: allow
agent:
  max_steps: 8
  streaming_moderation: {{enabled: {streaming}, chunk_chars: {chunk}, lookback_chars: {lookback}}}
"""


@dataclass(frozen=True)
class ModelDirs:
    main: Path
    llama_guard: Path
    prompt_guard: Path
    prompt_guard_2: Path


def tiny_model_dirs(directory: Path) -> ModelDirs:
    """The tiny checkpoints (built on first use, shared with the tests' cache)."""
    from guards.tiny_guards import build_tiny_guards
    from model.tiny import MAIN_MODEL_NAME, build_tiny_llama

    guards = build_tiny_guards(directory)
    return ModelDirs(
        build_tiny_llama(directory / MAIN_MODEL_NAME),
        guards["llama-guard"],
        guards["prompt-guard"],
        guards["prompt-guard-2"],
    )


def policy_text(mode: str, dirs: ModelDirs, sizes: Sizes, audit: Path) -> str:
    guarded = "false" if mode == "unguarded" else "true"
    return POLICY.format(
        main=dirs.main, llama_guard=dirs.llama_guard, prompt_guard=dirs.prompt_guard, audit=audit,
        stages=_GUARDED_STAGES.format(g=guarded), streaming="true" if mode == "optimized" else "false",
        chunk=sizes.chunk_chars, lookback=sizes.lookback_chars,
    )  # fmt: skip


def build_assistant(mode: str, scenario: Scenario, dirs: ModelDirs, workdir: Path) -> Any:
    """An Assistant for `mode` whose main model is the teacher-forced tiny Llama (see bench/forced.py)."""
    from assistant.api import Assistant
    from bench.forced import ForcedBackend
    from bench.reference import reference_pipeline

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    folder = workdir / mode
    folder.mkdir(parents=True, exist_ok=True)
    policy = folder / "policy.yaml"
    policy.write_text(policy_text(mode, dirs, scenario.sizes, folder / "audit.jsonl"), encoding="utf-8")
    bot = Assistant.from_policy(
        policy, tools=[fetch_page_tool(scenario.pages)], model=f"transformers:{dirs.main}",
        db_path=folder / "threads.sqlite",
    )  # fmt: skip
    bot = bot.replace(backend=ForcedBackend(str(dirs.main), reuse_cache=mode != "reference", context_window=16384))
    if mode == "reference":
        bot = bot.replace(pipeline=reference_pipeline(bot.pipeline))
    return apply_agent_switches(bot, mode)


def apply_agent_switches(bot: Any, mode: str) -> Any:
    """The agent's own switch: speculative generation (on in `optimized` only)."""
    from assistant.agent.deps import Performance

    return bot.replace(performance=Performance(speculative=mode == "optimized"))


class TokenCounter:
    """Counts the tokens every forward pass of a model processes (prefill and decode steps alike)."""

    def __init__(self) -> None:
        self.tokens = 0
        self._hooked: set[int] = set()

    def attach(self, model: Any) -> None:
        if id(model) in self._hooked:
            return
        self._hooked.add(id(model))

        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            mask = kwargs.get("attention_mask")
            ids = kwargs.get("input_ids", args[0] if args else None)
            if mask is not None and mask.dim() == 2 and ids is not None and mask.shape == ids.shape:
                self.tokens += int(mask.sum())  # padding of batched windows is not text
            elif ids is not None:
                self.tokens += int(ids.numel())

        model.register_forward_pre_hook(hook, with_kwargs=True)


@dataclass
class TurnRecord:
    mode: str
    repeat: int
    turn: int
    expect: str
    turn_s: float
    ttft_s: float | None  # first TokenDelta; None when nothing was shown
    main_prompt: int
    main_prefill: int
    main_generated: int
    llama_guard_tokens: int
    prompt_guard_tokens: int
    checkpoints: list[tuple[str, str]]  # (stage, decision) per check, streamed chunks of one answer as one check
    outcome: str
    shown: str  # the text the user saw (TokenDelta)
    leaked: bool  # text the guards stopped reached an event
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)


def checkpoints_of(events: list[Any]) -> list[tuple[str, str]]:
    """Stage decisions in order; consecutive verdicts of the same stage (several guards, or the chunks of one
    streamed answer) are one check whose decision is the most severe (a guard error counts as block)."""
    from assistant.events import GuardVerdict, TokenDelta

    points: list[tuple[str, str]] = []
    previous_was_verdict = False
    for event in events:
        if isinstance(event, TokenDelta):  # released chunks sit between the verdicts of one streamed answer
            continue
        if not isinstance(event, GuardVerdict):
            previous_was_verdict = False
            continue
        decision = "block" if event.error is not None and event.decision != "allow" else event.decision
        if previous_was_verdict and points and points[-1][0] == event.stage:
            stage, current = points[-1]
            points[-1] = (stage, max(current, decision, key=SEVERITY.__getitem__))
        else:
            points.append((event.stage, decision))
        previous_was_verdict = True
    return points


def outcome_of(events: list[Any]) -> str:
    from assistant.events import Error, Final, Refusal

    last = events[-1] if events else None
    if isinstance(last, Final):
        return "final"
    if isinstance(last, Refusal):
        return f"refusal:{last.stage}" + (":guard_error" if last.guard_error else "")
    if isinstance(last, Error):
        return f"error:{last.kind}:{last.message}"
    return f"other:{type(last).__name__}"


def guard_models(bot: Any) -> tuple[Any | None, Any | None]:
    """The loaded Llama Guard and Prompt Guard models (loading them now, outside any timing)."""
    runners = bot.pipeline.runners
    llama = runners.get("llama_guard")
    prompt = runners.get("prompt_guard")
    return (llama.load().model if llama else None), (prompt.load().model if prompt else None)


async def run_turns(
    bot: Any,
    scenario: Scenario,
    mode: str,
    repeat: int,
    counters: dict[str, TokenCounter],
    thread: str,
    turns: slice = slice(None),
) -> list[TurnRecord]:
    from assistant.events import TokenDelta

    backend = bot.backend
    backend.reset_cache()
    records: list[TurnRecord] = []
    for index, turn in list(enumerate(scenario.turns))[turns]:
        backend.set_script(turn.completions)
        calls_before = len(backend.calls)
        lg_before, pg_before = counters["llama_guard"].tokens, counters["prompt_guard"].tokens
        events: list[Any] = []
        ttft = None
        started = time.perf_counter()
        async for event in bot.stream(turn.user, thread=thread):
            if ttft is None and isinstance(event, TokenDelta):
                ttft = time.perf_counter() - started
            events.append(event)
        elapsed = time.perf_counter() - started
        calls = backend.calls[calls_before:]
        shown = "".join(e.text for e in events if isinstance(e, TokenDelta))
        blob = json.dumps([e.to_json() for e in events])
        leaked = mode != "unguarded" and turn.expect != "answer" and (UNSAFE in blob or (
            turn.expect == "input_block" and bool(shown)))  # fmt: skip
        records.append(
            TurnRecord(
                mode=mode, repeat=repeat, turn=index, expect=turn.expect, turn_s=elapsed, ttft_s=ttft,
                main_prompt=sum(c.prompt_tokens for c in calls), main_prefill=sum(c.prefill_tokens for c in calls),
                main_generated=sum(c.generated_tokens for c in calls),
                llama_guard_tokens=counters["llama_guard"].tokens - lg_before,
                prompt_guard_tokens=counters["prompt_guard"].tokens - pg_before,
                checkpoints=checkpoints_of(events), outcome=outcome_of(events), shown=shown, leaked=leaked,
                events=[e.to_json() for e in events],
            )
        )  # fmt: skip
    return records


async def run_benchmark(
    scenario: Scenario, dirs: ModelDirs, workdir: Path, *, repeats: int = 3, modes: tuple[str, ...] = MODES
) -> list[TurnRecord]:
    """Warm every mode up once (model loading, Llama Guard's prefix), then run the scenario `repeats` times per
    mode, the modes interleaved (in a rotating order) so that changes in the machine's load spread over all of them."""
    counters = {"llama_guard": TokenCounter(), "prompt_guard": TokenCounter()}
    bots = {mode: build_assistant(mode, scenario, dirs, workdir) for mode in modes}
    for bot in bots.values():
        llama, prompt = guard_models(bot)
        if llama is not None:
            counters["llama_guard"].attach(llama)
        if prompt is not None:
            counters["prompt_guard"].attach(prompt)
    for mode, bot in bots.items():  # turn 2 (a tool call, a tool result, an answer) touches every code path
        await run_turns(bot, scenario, mode, -1, counters, thread=f"warmup-{mode}", turns=slice(1, 2))
    records: list[TurnRecord] = []
    order = list(bots)
    for repeat in range(repeats):
        for mode in order[repeat % len(order) :] + order[: repeat % len(order)]:  # rotated: no mode always first
            records += await run_turns(bots[mode], scenario, mode, repeat, counters, thread=f"{mode}-{repeat}")
    return records
