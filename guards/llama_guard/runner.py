"""The `llama_guard` runner: the policy's Llama Guard (in process, in a child process, or on a remote
OpenAI-compatible server), its threshold and per-category actions applied to each verdict.

Images (`CheckInput.images`): an in-process Llama Guard 4 whose checkpoint has a vision tower sees them
(`sees_images`) and judges each with the message (guards.llama_guard.vision), the most severe verdict counting; any
other Llama Guard given images raises GuardImageError (blocked whatever on_error says), never judging the text
alone. The remote runner sends token ids, and images cannot travel as ids: it sees none."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from guards.errors import GuardError, GuardImageError
from guards.llama_guard.guard import LlamaGuard, load_causal_lm
from guards.llama_guard.prompt import PromptCategory, prompt_categories
from guards.llama_guard.remote import RemoteLlamaGuard
from guards.llama_guard.result import LlamaGuardResult
from guards.llama_guard.vision import checkpoint_sees_images
from guards.policy import Policy
from guards.policy.categories import LlamaGuardVariant, family_for_variant
from guards.policy.guards_config import LlamaGuardConfig
from guards.policy.registry import LLAMA_GUARD
from guards.runtime.process import Batching, GuardProcess
from guards.runtime.runner import CheckInput, elapsed_ms, in_thread, shared
from guards.sources import resolve_source
from guards.verdict import DECISIONS, Decision, Verdict
from model.tokenizer import get_tokenizer


class LlamaGuardRunner:
    name = LLAMA_GUARD

    def __init__(self, policy: Policy, source: str) -> None:
        self.policy = policy
        self.config = policy.guard_settings(self.name, LlamaGuardConfig)
        self.source = source
        self.timeout_s = float(self.config.timeout_s)
        self.on_error = self.config.on_error
        self._sees_images: bool | None = None

    @property
    def sees_images(self) -> bool:
        """Llama Guard 4 (`variant: "4"`) from a checkpoint with a vision tower, read from its config (no weights
        loaded; a source that cannot be resolved sees nothing, and fails to load at its first check anyway)."""
        if self._sees_images is None:
            if self.policy.models.llama_guard.variant != "4":
                self._sees_images = False
            else:
                try:
                    self._sees_images = checkpoint_sees_images(resolve_source(self.source))
                except GuardError:
                    self._sees_images = False
        return self._sees_images

    def load(self) -> Any:
        """The policy's Llama Guard (weights loaded once per source, device and dtype; the category block and the
        threshold are this policy's); with `models.llama_guard.process`, a child process serving it."""
        model_config = self.policy.models.llama_guard
        path = resolve_source(self.source)
        weights_key = f"{path}|{model_config.device}|{model_config.dtype}"
        config = self.config
        kwargs: dict[str, Any] = {
            "path": path, "device": model_config.device, "dtype": model_config.dtype, "variant": model_config.variant,
            "enabled": config.categories, "excluded": config.excluded, "threshold": config.threshold,
            "custom": [(c.code, c.name, c.description) for c in config.custom], "source": self.source,
            "cached_conversations": config.cached_conversations,
        }
        key = (
            f"{weights_key}|{model_config.variant}|{config.categories}|{config.excluded}|{config.custom}|"
            f"{config.threshold}|{config.cached_conversations}"
        )
        if model_config.process:
            batching = Batching(config.batch_checks, config.batch_wait_ms / 1000)
            process = GuardProcess(f"{__name__}:build_llama_guard", kwargs, name="Llama Guard",
                                   threads=model_config.threads, batching=batching)
            return shared("llama_guard_process", f"{key}|{model_config.threads}|{batching}", lambda: _started(process))
        model = shared("llama_guard_weights", weights_key,
                       lambda: load_causal_lm(path, device=model_config.device, dtype=model_config.dtype))
        return shared(LLAMA_GUARD, key, lambda: build_llama_guard(model=model, **kwargs))

    async def check(self, item: CheckInput) -> Verdict:
        started = time.perf_counter()
        if item.images and not self.sees_images:
            raise GuardImageError(self._blind_reason())
        guard = await in_thread(self.load)
        role = "agent" if item.role in ("assistant", "agent") else "user"
        if not item.images:
            result = await in_thread(lambda: guard.check_text(item.text, role=role, conversation=item.conversation))
            decision = self._decision(result)
            return Verdict(
                item.stage, self.name, decision, score=result.score,
                categories=result.categories if result.unsafe else (), reasons=tuple(result.reasons),
                latency_ms=elapsed_ms(started), tokens=result.prompt_tokens,
            )
        judged: list[tuple[str, LlamaGuardResult]] = []
        for image in item.images:  # one check per image, each with the whole message (the reference shield's way)
            result = await in_thread(lambda image=image: guard.check_text(
                item.text, role=role, conversation=item.conversation, image=image))
            judged.append((image.label, result))
        label, worst = max(judged, key=lambda pair: (DECISIONS.index(self._decision(pair[1])), pair[1].score))
        reasons = (f"judged with {len(judged)} image(s): {', '.join(name for name, _ in judged)}",
                   *(f"{label}: {reason}" for reason in worst.reasons))
        return Verdict(
            item.stage, self.name, self._decision(worst), score=worst.score,
            categories=worst.categories if worst.unsafe else (), reasons=reasons, latency_ms=elapsed_ms(started),
            tokens=sum(result.prompt_tokens for _, result in judged),
        )

    def _decision(self, result: LlamaGuardResult) -> Decision:
        return self.config.action_for(result.categories) if result.unsafe else "allow"

    def _blind_reason(self) -> str:
        return (f"images cannot be judged: the Llama Guard checkpoint {self.source!r} has no vision tower (only Llama "
                "Guard 4 in its full layout, models.llama_guard.variant: \"4\", in process, sees images)")


class RemoteLlamaGuardRunner(LlamaGuardRunner):
    """The `llama_guard` runner for `models.llama_guard.backend: openai`: only `load` differs from in-process (the
    verdict mapping is inherited, so thresholds and actions behave the same)."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy, policy.models.llama_guard.source)
        self._client: RemoteLlamaGuard | None = None
        self._lock = threading.Lock()

    @property
    def sees_images(self) -> bool:
        """Never: the remote guard sends token ids (the prompt exactly as ours), and images cannot travel as ids."""
        return False

    def _blind_reason(self) -> str:
        return ("images cannot be judged: the remote Llama Guard (models.llama_guard.backend: openai) is sent token "
                "ids, which cannot carry images; run Llama Guard 4 in process to judge images")

    def load(self) -> RemoteLlamaGuard:
        """The client, once the server has answered that it serves the model (retried at the next check if not)."""
        with self._lock:
            if self._client is None:
                self._client = self._client_for_policy()
                # The first load probes (within timeout_s) so start-up (/readyz) reports a server that is down or
                # serves another model. A failed probe stays pending: the next checks probe again, each inside its
                # own timeout_s budget (the pipeline runs load outside the check's timeout).
                self._client.probe()
            return self._client

    def _client_for_policy(self) -> RemoteLlamaGuard:
        model_config = self.policy.models.llama_guard
        config = self.config
        api_key = None
        if model_config.api_key_env:
            api_key = os.environ.get(model_config.api_key_env)
            if not api_key:
                raise GuardError(
                    f"environment variable {model_config.api_key_env} (models.llama_guard.api_key_env) is not set"
                )
        custom = [PromptCategory(c.code, c.name, c.description) for c in config.custom]
        categories = prompt_categories(
            model_config.variant, enabled=config.categories, excluded=config.excluded, custom=custom
        )
        if model_config.base_url is None:  # the policy's check requires it with backend: openai
            raise GuardError("models.llama_guard.base_url is not set")
        return RemoteLlamaGuard(
            model_config.base_url, model=model_config.source, api_key=api_key, categories=categories,
            excluded=config.excluded, threshold=config.threshold, timeout_s=self.timeout_s,
            variant=model_config.variant,
        )


def build_runner(policy: Policy, source: str) -> LlamaGuardRunner:
    """The registry's factory: scored by a remote server (vLLM) with `backend: openai`, else in process."""
    if policy.models.llama_guard.backend == "openai":
        return RemoteLlamaGuardRunner(policy)
    return LlamaGuardRunner(policy, source)


def build_llama_guard(
    *, path: str, device: str, dtype: str, variant: LlamaGuardVariant, enabled: Any, excluded: Any,
    custom: list[tuple[str, str, str]], threshold: float, cached_conversations: int, source: str, model: Any = None,
) -> LlamaGuard:
    """A LlamaGuard with the policy's categories and threshold; loads the weights unless `model` is given (a child
    process builds its own from these plain arguments)."""
    if model is None:
        model = load_causal_lm(path, device=device, dtype=dtype)
    categories = prompt_categories(
        variant, enabled=enabled, excluded=excluded, custom=[PromptCategory(*c) for c in custom],
    )
    local = Path(path)
    tokenizer = get_tokenizer(local if local.is_dir() else None, family=family_for_variant(variant))
    return LlamaGuard(
        model, tokenizer=tokenizer, categories=categories, excluded=excluded, threshold=threshold, source=source,
        cached_conversations=cached_conversations, variant=variant,
    )


def _started(process: GuardProcess) -> GuardProcess:
    process.start()
    return process
