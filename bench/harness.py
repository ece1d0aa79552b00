"""Run the scenario through the real guarded agent (`assistant.api.Assistant`) in each mode and record every turn.

Modes (same models, same scenario, same policy thresholds, same backend: the main model's KV cache is reused in every
mode, and every mode runs in the same process with the same torch threads):
- `unguarded`: no guard at any stage (the best the model alone can do).
- `ogx`, `llamafirewall`: the peers, each guarding the way its project runs today; `llama-stack`: the historical
  peer (Llama Stack 0.2's Agents API, removed when the project became OGX) (bench/peers.py).
- `ours`: concurrent guards, one-forward Llama Guard with its precomputed prefix (and the last check's cache reused),
  generation started speculatively while the input and tool-result guards run, streaming moderation in chunks.

`run_concurrent` runs one mode's conversations side by side (the throughput figure).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.scenario import OGX_BATCH_CHARS, UNSAFE, Scenario, Sizes, fetch_page_tool

MODES = ("unguarded", "ogx", "llama-stack", "llamafirewall", "ours")
ALL_CORES = "unguarded-all-cores"  # the unguarded mode again, its main model on every core (a reference baseline)
GUARDED = ("ogx", "llama-stack", "llamafirewall", "ours")
SEVERITY = {"allow": 0, "log": 1, "warn": 2, "ask": 3, "block": 4}

_GUARDED_STAGES = """\
  user_input: {{llama_guard: {{enabled: {g}}}, prompt_guard: {{enabled: {g}, score: jailbreak}}}}
  model_output: {{llama_guard: {{enabled: {g}}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: {t}, score: injection}}}}
  code: {{code_shield: {{enabled: false}}}}
"""

POLICY = """\
version: 1
models:
  main: {{source: {main}, device: cpu, dtype: float32, context_window: 16384, max_new_tokens: 2048}}
  llama_guard: {{source: {llama_guard}, variant: 8b, device: cpu, dtype: float32{guard_process}}}
  prompt_guard: {{source: {prompt_guard}, device: cpu{guard_process}}}
llama_guard: {{timeout_s: 600, cached_conversations: 8}}  # like an inference server's prefix cache, every mode
prompt_guard: {{timeout_s: 600, stride_tokens: {stride}}}
stages:
{stages}audit: {{path: {audit}, texts: hash}}
tools:
  untrusted_content: allow
agent:
  max_steps: 8
  streaming_moderation: {{enabled: {streaming}, chunk_chars: {chunk}, first_chunk_chars: {first}}}
"""


@dataclass(frozen=True)
class ModelDirs:
    main: Path
    llama_guard: Path
    prompt_guard: Path
    prompt_guard_2: Path


def tiny_model_dirs(directory: Path) -> ModelDirs:
    """The tiny checkpoints (built on first use, shared with the tests' cache)."""
    from assistant.dev.tiny_guards.builder import build_tiny_guards
    from model.tiny import MAIN_MODEL_NAME, build_tiny_llama

    guards = build_tiny_guards(directory)
    return ModelDirs(
        build_tiny_llama(directory / MAIN_MODEL_NAME),
        guards["llama-guard"],
        guards["prompt-guard"],
        guards["prompt-guard-2"],
    )


def import_model_classes() -> None:
    """Resolve transformers' lazy model classes once, before models load on several threads at once (two threads
    importing from the lazy module together can fail with ImportError)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: F401


def policy_text(mode: str, dirs: ModelDirs, sizes: Sizes, audit: Path, guard_threads: int | None = None) -> str:
    """`guard_threads`: the guard models run in processes of their own with that many torch threads (every guarded
    mode alike); None: on threads of the agent's process."""
    guarded = "false" if mode.startswith("unguarded") else "true"
    process = "" if guard_threads is None else f", process: true, threads: {guard_threads}"
    # Neither OGX nor Llama Stack guards the results of tools called inside a turn (bench/peers.py).
    tool_results = "false" if mode.startswith("unguarded") or mode in ("llama-stack", "ogx") else "true"
    chunk, first = (OGX_BATCH_CHARS, OGX_BATCH_CHARS) if mode == "ogx" else (sizes.chunk_chars, sizes.first_chunk_chars)
    return POLICY.format(
        main=dirs.main, llama_guard=dirs.llama_guard, prompt_guard=dirs.prompt_guard, audit=audit,
        stages=_GUARDED_STAGES.format(g=guarded, t=tool_results),
        streaming="true" if mode in ("ours", "ogx") else "false",
        chunk=chunk, first=first, stride=sizes.prompt_guard_stride,
        guard_process=process if guarded == "true" else "",
    )


def build_assistant(
    mode: str, scenario: Scenario, dirs: ModelDirs, workdir: Path, guard_threads: int | None = None
) -> Any:
    """An Assistant for `mode` whose main model is the teacher-forced tiny Llama (see bench/forced.py)."""
    from assistant.api import Assistant
    from bench.forced import ForcedBackend
    from bench.peers import PEERS, peer_pipeline

    if mode not in (*MODES, ALL_CORES):
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    folder = workdir / mode
    folder.mkdir(parents=True, exist_ok=True)
    policy = folder / "policy.yaml"
    policy.write_text(policy_text(mode, dirs, scenario.sizes, folder / "audit.jsonl", guard_threads), encoding="utf-8")
    bot = Assistant.from_policy(
        policy, tools=[fetch_page_tool(scenario.pages)], model=f"transformers:{dirs.main}",
        db_path=folder / "threads.sqlite",
    )
    backend = ForcedBackend(str(dirs.main), reuse_cache=True, context_window=16384)
    backend.set_scenario(scenario.scripts)
    bot = bot.replace(backend=backend)
    if mode in PEERS:
        bot = bot.replace(pipeline=peer_pipeline(mode, bot.pipeline))
    return apply_agent_switches(bot, mode)


def apply_agent_switches(bot: Any, mode: str) -> Any:
    """The agent's own switch: speculative generation (ours only; the peers start the model after the input
    shields)."""
    from assistant.agent.deps import Performance

    return bot.replace(performance=Performance(speculative=mode == "ours"))


def _cpu_s() -> float:
    """CPU seconds of this process and of the guard processes it started (read from /proc: a child's time reaches
    RUSAGE_CHILDREN only once it has exited)."""
    import resource

    from guards.runtime.process import live_pids

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + sum(_process_cpu_s(pid) for pid in live_pids())


def _guard_cpu_s() -> float:
    """CPU seconds of the guard processes alone (those of idle modes add nothing while another mode runs)."""
    from guards.runtime.process import live_pids

    return sum(_process_cpu_s(pid) for pid in live_pids())


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class TokenCounter:
    """Counts the tokens every forward pass of a guard model processes (prefill and decode steps alike), in this
    process (a forward hook) or in the guard's own process (its counter)."""

    def __init__(self) -> None:
        self._local = [0]  # forward passes in this process (guards.runtime.child.count_forward_tokens)
        self._hooked: set[int] = set()
        self._processes: dict[int, Any] = {}

    @property
    def tokens(self) -> int:
        return self._local[0] + sum(int(p.stats()["tokens"]) for p in self._processes.values())

    def attach(self, guard: Any) -> None:
        from guards.runtime.child import count_forward_tokens

        if hasattr(guard, "stats"):  # guards.runtime.process.GuardProcess
            self._processes[id(guard)] = guard
            return
        if id(guard.model) not in self._hooked:
            self._hooked.add(id(guard.model))
            count_forward_tokens(guard.model, self._local)


@dataclass
class TurnRecord:
    mode: str
    repeat: int
    turn: int
    expect: str
    turn_s: float
    ttft_s: float | None  # first checked token (first TokenDelta: the agent shows only checked text); None: nothing
    ttft_shown_s: float | None  # first token the user sees: the same, except llama-stack, which streams the answer
    # before its output shields run (the first token of the turn's last model call)
    main_prompt: int
    main_prefill: int
    main_generated: int
    llama_guard_tokens: int
    prompt_guard_tokens: int
    checkpoints: list[tuple[str, str]]  # (stage, decision) per check, streamed chunks of one answer as one check
    outcome: str
    shown: str  # the text the user saw (TokenDelta)
    leaked: bool  # text the guards stopped reached an event
    cpu_s: float | None = None  # CPU seconds the process spent on the turn, all threads (steadier than wall time
    # on a shared machine: the work done, not how long it waited for a core)
    guard_cpu_s: float | None = None  # ... of which the guard processes spent
    last_checked_s: float | None = None  # the last TokenDelta: the answer's last checked text shown
    family: str = "scenario"  # "scenario" (the fixed conversation) or "lengths" (one answer per length)
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
    """The loaded Llama Guard and Prompt Guard (loading them now, outside any timing): the guard objects, or the
    processes serving them."""
    runners = bot.pipeline.runners
    llama = runners.get("llama_guard")
    prompt = runners.get("prompt_guard")
    return (llama.load() if llama else None), (prompt.load() if prompt else None)


async def run_turns(
    bot: Any,
    scenario: Scenario,
    mode: str,
    repeat: int,
    counters: dict[str, TokenCounter],
    thread: str,
    turns: slice = slice(None),
    family: str = "scenario",
) -> list[TurnRecord]:
    """`family`: "scenario" runs `scenario.turns[turns]` in one conversation; "lengths" runs each of
    `scenario.lengths[turns]` in a conversation of its own, Llama Guard's cached checks dropped before it."""
    from assistant.events import TokenDelta

    backend = bot.backend
    backend.reset_cache()
    records: list[TurnRecord] = []
    chosen = scenario.turns if family == "scenario" else scenario.lengths
    for index, turn in list(enumerate(chosen))[turns]:
        if family == "lengths":
            backend.reset_cache()
            forget_guard_checks(bot)
        calls_before = len(backend.calls)
        lg_before, pg_before = counters["llama_guard"].tokens, counters["prompt_guard"].tokens
        events: list[Any] = []
        ttft = last = None
        cpu, guard_cpu = _cpu_s(), _guard_cpu_s()
        started = time.perf_counter()
        conversation = thread if family == "scenario" else f"{thread}-length{index}"
        async for event in bot.stream(turn.user, thread=conversation):
            if isinstance(event, TokenDelta):
                last = time.perf_counter() - started
                ttft = last if ttft is None else ttft
            events.append(event)
        elapsed = time.perf_counter() - started
        cpu, guard_cpu = _cpu_s() - cpu, _guard_cpu_s() - guard_cpu
        calls = backend.calls[calls_before:]
        shown_at = ttft
        if mode == "llama-stack":  # streamed as generated, before the output shields (even when they then block)
            answer = [c for c in calls if not c.cancelled and c.first_token_at is not None]
            shown_at = answer[-1].first_token_at - started if answer else ttft  # type: ignore[operator]
        shown = "".join(e.text for e in events if isinstance(e, TokenDelta))
        blob = json.dumps([e.to_json() for e in events])
        leaked = not mode.startswith("unguarded") and turn.expect != "answer" and (UNSAFE in blob or (
            turn.expect == "input_block" and bool(shown)))
        records.append(
            TurnRecord(
                mode=mode, repeat=repeat, turn=index, expect=turn.expect, turn_s=elapsed, ttft_s=ttft, cpu_s=cpu,
                guard_cpu_s=guard_cpu, last_checked_s=last, family=family,
                ttft_shown_s=shown_at, main_prompt=sum(c.prompt_tokens for c in calls),
                main_prefill=sum(c.prefill_tokens for c in calls),
                main_generated=sum(c.generated_tokens for c in calls),
                llama_guard_tokens=counters["llama_guard"].tokens - lg_before,
                prompt_guard_tokens=counters["prompt_guard"].tokens - pg_before,
                checkpoints=checkpoints_of(events), outcome=outcome_of(events), shown=shown, leaked=leaked,
                events=[e.to_json() for e in events],
            )
        )
    return records


def forget_guard_checks(bot: Any) -> None:
    """Llama Guard's cached checks dropped (in its process or here): the next check reads its text cold."""
    from guards.runtime.process import GuardProcess

    runner = bot.pipeline.runners.get("llama_guard")
    if runner is None:
        return
    guard = runner.load()
    if isinstance(guard, GuardProcess):
        guard.call("bench.peers:forget_checks")
    else:
        from bench.peers import forget_checks

        forget_checks(guard)


async def run_benchmark(
    scenario: Scenario, dirs: ModelDirs, workdir: Path, *, repeats: int = 3, modes: tuple[str, ...] = MODES,
    threads: dict[str, int] | None = None, guard_threads: int | None = None, length_repeats: int = 0,
) -> list[TurnRecord]:
    """Warm every mode up once (model loading, Llama Guard's prefix), then run the scenario `repeats` times per
    mode, the modes interleaved (in a rotating order) so that changes in the machine's load spread over all of them;
    then the growth-with-length family (`scenario.lengths`) `length_repeats` times per mode, interleaved alike.
    `threads`: torch threads per operation of each mode's own process (set before each of its runs)."""
    import torch

    import_model_classes()
    counters = {"llama_guard": TokenCounter(), "prompt_guard": TokenCounter()}
    bots = {mode: build_assistant(mode, scenario, dirs, workdir, guard_threads) for mode in modes}
    default_threads = torch.get_num_threads()

    def use_threads(mode: str) -> None:
        torch.set_num_threads((threads or {}).get(mode, default_threads))

    for bot in bots.values():
        llama, prompt = guard_models(bot)
        if llama is not None:
            counters["llama_guard"].attach(llama)
        if prompt is not None:
            counters["prompt_guard"].attach(prompt)
    for mode, bot in bots.items():  # turn 2 (a tool call, a tool result, an answer) touches every code path
        use_threads(mode)
        await run_turns(bot, scenario, mode, -1, counters, thread=f"warmup-{mode}", turns=slice(1, 2))
    records: list[TurnRecord] = []
    order = list(bots)
    for repeat in range(repeats):
        for mode in order[repeat % len(order) :] + order[: repeat % len(order)]:  # rotated: no mode always first
            use_threads(mode)
            records += await run_turns(bots[mode], scenario, mode, repeat, counters, thread=f"{mode}-{repeat}")
    for repeat in range(length_repeats if scenario.lengths else 0):
        for mode in order[repeat % len(order) :] + order[: repeat % len(order)]:
            use_threads(mode)
            records += await run_turns(bots[mode], scenario, mode, repeat, counters, thread=f"{mode}-{repeat}",
                                       family="lengths")
    torch.set_num_threads(default_threads)
    return records


@dataclass
class ConcurrentRun:
    mode: str
    conversations: int
    turns: int  # turns completed, all conversations together
    wall_s: float
    outcomes: list[str]
    cpu_s: float = 0.0

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.wall_s if self.wall_s else 0.0


async def run_concurrent(
    bot: Any, scenario: Scenario, mode: str, *, conversations: int, turns: slice, tag: str
) -> ConcurrentRun:
    """`conversations` users at once, each running the scenario's `turns` in its own thread; the backend serves
    them one generation at a time (one process, one model), the guards run beside it."""

    async def one(index: int) -> list[str]:
        outcomes = []
        for turn in scenario.turns[turns]:
            events = [event async for event in bot.stream(turn.user, thread=f"{tag}-{mode}-{index}")]
            outcomes.append(outcome_of(events))
        return outcomes

    bot.backend.reset_cache()
    cpu = _cpu_s()
    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(conversations)))
    wall = time.perf_counter() - started
    outcomes = [o for result in results for o in result]
    return ConcurrentRun(mode, conversations, len(outcomes), wall, outcomes, _cpu_s() - cpu)


async def run_throughput(
    scenario: Scenario, dirs: ModelDirs, workdir: Path, *, conversations: int, repeats: int, turns: slice,
    modes: tuple[str, ...] = ("unguarded", "ours"), guard_threads: int | None = None,
) -> list[ConcurrentRun]:
    """Concurrent runs of each mode, interleaved over `repeats` (after a warm-up of each)."""
    import_model_classes()
    bots = {mode: build_assistant(mode, scenario, dirs, workdir / "concurrent", guard_threads) for mode in modes}
    for mode, bot in bots.items():
        guard_models(bot)
        await run_concurrent(bot, scenario, mode, conversations=2, turns=slice(2, 3), tag="warmup")
    runs: list[ConcurrentRun] = []
    order = list(bots)
    for repeat in range(repeats):
        for mode in order[repeat % len(order) :] + order[: repeat % len(order)]:
            runs.append(await run_concurrent(
                bots[mode], scenario, mode, conversations=conversations, turns=turns, tag=f"r{repeat}"))
    return runs
