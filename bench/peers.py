"""The peers, each guarding a turn the way its project runs it, rebuilt on our guard models for the benchmark.

Same models, same policy thresholds and actions, same fail-closed handling (our `GuardPipeline._run_one`); only the
way the guards are run differs, as read in the peers' code:

`ogx` (OGX, the project Llama Stack was renamed to; its Responses API, read in github.com/ogx-ai/ogx and its
mirror opendatahub-io/ogx, files under `src/ogx/providers/inline/responses/builtin/responses/`; commits in
docs/PERFORMANCE.md):
- input guardrails: one moderation request on the text of all the request's messages joined, before the model
  runs (`streaming.py`, `StreamingResponseOrchestrator.create_response`: `run_guardrails(..., combined_text)`);
- output: the streamed text events are held; when 200 new characters have accumulated (`_GUARDRAIL_BATCH_CHARS`)
  the whole accumulated answer is checked, one request at a time while the stream waits, and the held events are
  released once it passed; a last check covers the rest at the end of the stream (`_process_streaming_chunks`);
- no guardrail on tool results (only the request's input and the model's streamed text are checked);
- `run_guardrails` (`utils.py`) fails closed: a moderation request that errors blocks; the request carries the text
  alone, no conversation (`{"input": text}`). Here the endpoint is served by our Llama Guard generating its verdict
  (as the other peers') and, at the input, Prompt Guard beside it; its prompt prefix cache is reused as ours.

`llama-stack` (historical: llama_stack 0.2.12, the Agents API that OGX removed; installed code in
`.venv/lib/python3.11/site-packages/`):
- input shields run concurrently, every one to its end: `asyncio.gather` in
  `llama_stack/providers/inline/agents/meta_reference/safety.py` (`ShieldRunnerMixin.run_multiple_shields`);
- input shields see the turn's input messages only, output shields the input messages plus the final answer, once
  it is complete (`agent_instance.py`, `ChatAgent.run`: `run_multiple_shields_wrapper(..., input_messages, ...)`
  before `_run`, `messages = input_messages + [final_response]` after it); tool results produced inside the turn go
  through no shield; the answer's text is streamed to the client while it is generated, before the output shields
  run (`_run` yields each `TextDelta` of `inference_api.chat_completion(..., stream=True)`);
- Llama Guard generates its verdict text (`providers/inline/safety/llama_guard/llama_guard.py`,
  `LlamaGuardShield.run`: `inference_api.chat_completion(...)`, then parses `safe` / `unsafe\\nS1,...`); its
  inference server caches the prompt's prefix (here: the Llama Guard head and the last check's cache, as ours);
- Prompt Guard scores the last message in one pass (`providers/inline/safety/prompt_guard/prompt_guard.py`).

`llamafirewall` (llamafirewall 1.0.3):
- scanners one after another, stopping at the first block (`llamafirewall/llamafirewall.py`, `scan_async`);
- each scan sees one message, no conversation (`scan(input: Message)`); the application scans the assistant's
  message once it is complete (it has no streaming interface);
- Prompt Guard reads the first 512 tokens only (`scanners/promptguard_utils.py`, `_get_class_probabilities`:
  `truncation=True, max_length=512`);
- it has no Llama Guard scanner: ours runs as a custom scanner that, like the other peer, generates its verdict.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from guards.llama_guard.runner import LlamaGuardRunner
from guards.prompt_guard.runner import PromptGuardRunner
from guards.runtime.pipeline import GuardPipeline
from guards.runtime.process import GuardProcess
from guards.runtime.runner import CheckInput, in_thread
from guards.verdict import StageResult, Verdict

PEERS = ("ogx", "llama-stack", "llamafirewall")


class _PeerPipeline(GuardPipeline):
    """Our pipeline (same runners, audit, fail-closed verdicts) with the peer's schedule of a stage's guards."""

    sequential = False

    async def _check_text(self, item: CheckInput) -> StageResult:
        names = self.enabled_guards(item.stage)
        if self.sequential:
            verdicts: list[Verdict] = []
            for name in names:
                verdicts.append(await self._run_one(name, item))
                if verdicts[-1].decision == "block":
                    break
        else:  # every shield to its end, then the verdicts are read
            verdicts = list(await asyncio.gather(*(self._run_one(name, item) for name in names)))
        for verdict in verdicts:
            self._audit(verdict, item)
        return StageResult.from_verdicts(item.stage, verdicts)


class LlamaStackPipeline(_PeerPipeline):
    sequential = False


class LlamaFirewallPipeline(_PeerPipeline):
    sequential = True


class OgxPipeline(_PeerPipeline):
    """OGX: a stage's guards at once (the moderation endpoint answers for all of them); the answer's checks one at a
    time per conversation, each waiting for the one before (its stream awaits each check before it reads on)."""

    sequential = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._output_locks: dict[str | None, asyncio.Lock] = {}

    async def _check_text(self, item: CheckInput) -> StageResult:
        if item.stage != "model_output":
            return await super()._check_text(item)
        async with self._output_locks.setdefault(item.thread_id, asyncio.Lock()):
            return await super()._check_text(item)


def generate_verdict(guard: Any, turns: list[Any]) -> Any:
    """Llama Guard generating its verdict text greedily until its stop token, its prompt's prefix served from cache
    (what an inference server with prefix caching does): the same scores and categories as our one-forward check,
    plus the decoding steps of the verdict text."""
    import torch

    from guards.llama_guard.prompt import checked_role, tail_segments

    role = checked_role(turns)
    tail = guard._encode(tail_segments(turns))
    started = time.perf_counter()
    with guard._lock, torch.inference_mode():
        prefix = guard._prefixes[role]
        ids = prefix.ids + tail
        cache, cached = guard._reusable_cache(role, prefix, ids)
        logits, cache = guard._forward(ids[cached:], cache)
        guard.remember(role, ids, cache)  # what it decodes below is cropped off when the next check reuses it
        score, verdict = guard._first_token(logits)
        first = guard.unsafe_id if (verdict == "unsafe" or score >= guard.threshold) else guard.safe_id
        text = ("unsafe" if first == guard.unsafe_id else "safe") + guard._continue(cache, first)
        result = guard._decide(score, verdict, text, "generate", len(ids), cached)
    from dataclasses import replace

    return replace(result, latency_ms=(time.perf_counter() - started) * 1000)


class PeerLlamaGuardRunner(LlamaGuardRunner):
    """Llama Guard generating its verdict over the messages the peer gives it (`scope`)."""

    def __init__(self, policy: Any, source: str, *, scope: str) -> None:
        super().__init__(policy, source)
        self.scope = scope  # "turn": the turn's user message as context (llama-stack); "message": none (firewall);
        # "text": the moderation request's text, no roles (ogx: at the input all the messages joined)

    def context(self, item: CheckInput) -> tuple[tuple[str, str], ...]:
        if self.scope in ("message", "text") or item.role not in ("assistant", "agent"):
            return ()
        users = [pair for pair in item.conversation if pair[0] == "user"]
        return users[-1:]

    def turns(self, item: CheckInput) -> list[Any]:
        from guards.llama_guard.prompt import as_turn

        if self.scope == "text":  # OGX: one moderation request carrying text only, no roles
            return [as_turn("user", moderation_text(item))]
        role = "agent" if item.role in ("assistant", "agent") else "user"
        return [as_turn(r, c) for r, c in self.context(item)] + [as_turn(role, item.text)]

    async def check(self, item: CheckInput) -> Verdict:
        started = time.perf_counter()
        guard = await in_thread(self.load)
        turns = self.turns(item)
        if isinstance(guard, GuardProcess):  # the guard's own process runs it
            result = await in_thread(guard.call, "bench.peers:generate_verdict", turns)
        else:
            result = await in_thread(generate_verdict, guard, turns)
        decision = self.config.action_for(result.categories) if result.unsafe else "allow"
        return Verdict(
            item.stage, self.name, decision, score=result.score, categories=result.categories if result.unsafe else (),
            reasons=tuple(result.reasons), latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )


def moderation_text(item: CheckInput) -> str:
    """What OGX sends its moderation endpoint: at the input, the text of every message of the request joined (the
    conversation so far, then the new message, space-separated as `interleaved_content_as_str` joins a list);
    elsewhere the text alone (the accumulated answer)."""
    if item.stage != "user_input":
        return item.text
    earlier = [text for _, text in item.conversation]
    if earlier and earlier[-1] == item.text:  # the agent's context already ends with the new message
        earlier.pop()
    return " ".join([*earlier, item.text])


def forget_checks(guard: Any) -> None:
    """Drop Llama Guard's cached checks (its constant prompt head stays), so that the next check starts cold, as
    the first check of a new conversation on an inference server would (called in the guard's process)."""
    guard._last.clear()


def first_window_score(guard: Any, text: str, kind: str) -> tuple[float, int]:
    """Prompt Guard on the first 512 tokens of the text only (LlamaFirewall's truncation); (score, tokens read)."""
    from guards.prompt_guard.guard import preprocess_text

    prepared = preprocess_text(text, guard.tokenizer) if guard.preprocess else text
    ids = guard.tokenizer(prepared, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    ids = [i for i in ids if i not in guard._special_ids][: guard.content_tokens]
    indices = list(guard.scheme.jailbreak if kind == "jailbreak" else guard.scheme.injection)
    with guard._lock:
        return guard._score_batch([ids], indices)[0], len(ids)


class FirstWindowPromptGuardRunner(PromptGuardRunner):
    async def check(self, item: CheckInput) -> Verdict:
        started = time.perf_counter()
        stage = self.policy.stages.get(item.stage).prompt_guard
        guard = await in_thread(self.load)
        if isinstance(guard, GuardProcess):
            score, tokens = await in_thread(guard.call, "bench.peers:first_window_score", item.text, stage.score)
        else:
            score, tokens = await in_thread(first_window_score, guard, item.text, stage.score)
        decision = stage.action if score >= stage.threshold else "allow"
        return Verdict(
            item.stage, self.name, decision, score=score,
            reasons=(f"{stage.score} score {score:.3f} (threshold {stage.threshold}, first {tokens} tokens)",),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )


def peer_pipeline(peer: str, pipeline: GuardPipeline) -> GuardPipeline:
    """`pipeline`'s policy, guard models and audit sink, run the way `peer` runs them."""
    runners: dict[str, Any] = dict(pipeline.runners)
    llama, prompt = runners.get("llama_guard"), runners.get("prompt_guard")
    if peer == "llama-stack":
        if isinstance(llama, LlamaGuardRunner):
            runners["llama_guard"] = PeerLlamaGuardRunner(pipeline.policy, llama.source, scope="turn")
        return LlamaStackPipeline(pipeline.policy, runners, audit=pipeline.audit)
    if peer == "ogx":
        if isinstance(llama, LlamaGuardRunner):
            runners["llama_guard"] = PeerLlamaGuardRunner(pipeline.policy, llama.source, scope="text")
        return OgxPipeline(pipeline.policy, runners, audit=pipeline.audit)
    if peer == "llamafirewall":
        if isinstance(llama, LlamaGuardRunner):
            runners["llama_guard"] = PeerLlamaGuardRunner(pipeline.policy, llama.source, scope="message")
        if isinstance(prompt, PromptGuardRunner):
            runners["prompt_guard"] = FirstWindowPromptGuardRunner(pipeline.policy, prompt.source)
        return LlamaFirewallPipeline(pipeline.policy, runners, audit=pipeline.audit)
    raise ValueError(f"unknown peer {peer!r}; use one of {', '.join(PEERS)}")
