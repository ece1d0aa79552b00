"""The peers' way of guarding a turn, rebuilt from our own guards for the benchmark's `reference` mode.

Llama Stack and LlamaFirewall run their shields one after another (stopping at the first violation), make Llama Guard
generate its verdict text with the whole prompt each time, re-encode the whole conversation at every agent step and
check the answer only once it is complete. The last two are switches of the backend (`reuse_cache`) and of the agent
(streaming moderation off); the first two live here, as a pipeline and a Llama Guard runner with the same policy,
thresholds and fail-closed handling as ours, so that only the way of running them differs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from guards.pipeline import CheckInput, GuardPipeline
from guards.stage_runners import LlamaGuardRunner, in_thread
from guards.verdict import StageResult, Verdict


class SequentialPipeline(GuardPipeline):
    """The stage's guards one after another, in the pipeline's order; the first block ends the stage."""

    async def check(
        self,
        stage: str,
        text: str,
        *,
        role: str = "user",
        conversation: Sequence[tuple[str, str]] = (),
        language: str | None = None,
        thread_id: str | None = None,
    ) -> StageResult:
        item = CheckInput(stage, text, role, tuple((r, t) for r, t in conversation), language, thread_id)
        verdicts: list[Verdict] = []
        for name in self.enabled_guards(stage):
            verdict = await self._run_one(name, item)
            verdicts.append(verdict)
            if verdict.decision == "block":
                break
        for verdict in verdicts:
            self._audit(verdict, item)
        return StageResult.from_verdicts(stage, verdicts)


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


def reference_pipeline(pipeline: GuardPipeline) -> SequentialPipeline:
    """The same policy, runners and audit sink as `pipeline`, run the peers' way."""
    runners: dict[str, Any] = dict(pipeline.runners)
    if isinstance(runners.get("llama_guard"), LlamaGuardRunner):
        current = runners["llama_guard"]
        runners["llama_guard"] = GeneratingLlamaGuardRunner(pipeline.policy, current.source)
    return SequentialPipeline(pipeline.policy, runners, audit=pipeline.audit)
