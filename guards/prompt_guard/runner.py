"""The `prompt_guard` runner: the policy's Prompt Guard, each stage's score (jailbreak / injection), threshold and
action applied to its windowed score."""

from __future__ import annotations

import time
from typing import Any

from guards.policy import Policy
from guards.policy.guard_stages import PromptGuardStage
from guards.policy.guards_config import PromptGuardConfig
from guards.policy.registry import PROMPT_GUARD
from guards.prompt_guard.guard import PromptGuard
from guards.runtime.process import GuardProcess
from guards.runtime.runner import CheckInput, elapsed_ms, in_thread, shared
from guards.verdict import Verdict


class PromptGuardRunner:
    name = PROMPT_GUARD
    sees_images = False  # reads text only: text inside an image never reaches it

    def __init__(self, policy: Policy, source: str) -> None:
        self.policy = policy
        self.config = policy.guard_settings(self.name, PromptGuardConfig)
        self.source = source
        self.timeout_s = float(self.config.timeout_s)
        self.on_error = self.config.on_error

    def load(self) -> PromptGuard | GuardProcess:
        """The loaded Prompt Guard (once per source, device and windowing, per process); with
        `models.prompt_guard.process`, a child process serving it."""
        config = self.config
        model_config = self.policy.models.prompt_guard
        # The policy's stride is the step between window starts; PromptGuard takes the overlap.
        overlap = config.window_tokens - config.stride_tokens
        key = f"{self.source}|{model_config.device}|{model_config.dtype}|{config.window_tokens}|{overlap}|" \
              f"{config.batch_size}"
        # plain arguments of PromptGuard.load, pickled to a guard process when there is one
        kwargs: dict[str, Any] = {"source": self.source, "device": model_config.device, "dtype": model_config.dtype,
                                  "window_tokens": config.window_tokens, "overlap_tokens": overlap,
                                  "batch_size": config.batch_size}
        if model_config.process:
            process = GuardProcess("guards.prompt_guard.guard:PromptGuard.load", kwargs, name="Prompt Guard",
                                   threads=model_config.threads)
            process_key = f"{key}|{model_config.threads}"
            return shared("prompt_guard_process", process_key, lambda: _started(process))
        return shared(PROMPT_GUARD, key, lambda: PromptGuard.load(**kwargs))

    async def check(self, item: CheckInput) -> Verdict:
        started = time.perf_counter()
        stage = self.policy.stages.get(item.stage).guard(self.name)
        assert isinstance(stage, PromptGuardStage)  # the declaration's per-stage section
        guard = await in_thread(self.load)
        result = await in_thread(guard.score, item.text, stage.score)
        decision = stage.action if result.score >= stage.threshold else "allow"
        return Verdict(
            item.stage, self.name, decision, score=result.score,
            reasons=(f"{stage.score} score {result.score:.3f} (threshold {stage.threshold}, {result.windows} "
                     f"window(s))",), latency_ms=elapsed_ms(started), tokens=result.tokens,
        )


def build_runner(policy: Policy, source: str) -> PromptGuardRunner:
    return PromptGuardRunner(policy, source)


def _started(process: GuardProcess) -> GuardProcess:
    process.start()
    return process
