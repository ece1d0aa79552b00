"""The peers' way of guarding a turn, rebuilt from our own guards for the benchmark's `reference` mode.

Llama Stack and LlamaFirewall run their shields one after another (stopping at the first violation), make Llama Guard
generate its verdict text with the whole prompt each time, re-encode the whole conversation at every agent step and
check the answer only once it is complete. The last two are switches of the backend (`reuse_cache`) and of the agent
(streaming moderation off); the first two live here: our own `GuardPipeline` with the sequential schedule, and a Llama
Guard runner that generates, with the same policy, thresholds and fail-closed handling as ours, so that only the way
of running them differs.
"""

from __future__ import annotations

import time
from typing import Any

from guards.pipeline import CheckInput, GuardPipeline, in_thread, run_sequentially
from guards.stage_runners import LlamaGuardRunner
from guards.verdict import Verdict


class GeneratingLlamaGuardRunner(LlamaGuardRunner):
    """Llama Guard that generates its verdict text (`generate()` over the whole prompt, no prefix cache)."""

    async def check(self, item: CheckInput) -> Verdict:
        started = time.perf_counter()
        guard = await in_thread(self.load)
        role = "agent" if item.role in ("assistant", "agent") else "user"
        result = await in_thread(
            lambda: guard.check_text(item.text, role=role, conversation=item.conversation, mode="generate")
        )
        decision = self.config.action_for(result.categories) if result.unsafe else "allow"
        return Verdict(
            item.stage, self.name, decision, score=result.score, categories=result.categories if result.unsafe else (),
            reasons=tuple(result.reasons), latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )  # fmt: skip


def reference_pipeline(pipeline: GuardPipeline) -> GuardPipeline:
    """The same policy, runners and audit sink as `pipeline`, run the peers' way: the real `GuardPipeline.check`
    with the sequential schedule (one guard after another, stopping at the first block)."""
    runners: dict[str, Any] = dict(pipeline.runners)
    if isinstance(runners.get("llama_guard"), LlamaGuardRunner):
        current = runners["llama_guard"]
        runners["llama_guard"] = GeneratingLlamaGuardRunner(pipeline.policy, current.source)
    return GuardPipeline(pipeline.policy, runners, audit=pipeline.audit, schedule=run_sequentially)
