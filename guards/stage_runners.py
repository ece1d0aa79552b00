"""The guard runners the pipeline uses: each wraps one guard module, applies the policy's thresholds and actions,
and returns a Verdict (or raises; the pipeline turns that into a fail-closed verdict).

Models load lazily, on a worker thread, once per process (`_shared`): every pipeline built from any policy that names
the same model directory reuses the loaded model; different models load at the same time (one lock per model key).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from guards.guard_process import GuardProcess
from guards.pipeline import CheckInput, GuardRunner, in_thread
from guards.verdict import Verdict

logger = logging.getLogger(__name__)
MAX_SHARED = 16  # loaded guards kept per process; the least recently used beyond this are dropped
_SHARED: OrderedDict[tuple[str, str], Any] = OrderedDict()
_SHARED_LOCK = threading.Lock()  # guards the two tables only, never held during a load
_KEY_LOCKS: dict[tuple[str, str], threading.Lock] = {}


def _shared(kind: str, key: str, load: Callable[[], Any]) -> Any:
    """One loaded guard per (kind, source) per process. Each key loads under its own lock, so Llama Guard and Prompt
    Guard load side by side while two users of the same model wait for one load. A failed load is not cached, so a
    fixed setup recovers. The table is bounded (`MAX_SHARED`, least recently used dropped first)."""
    entry = (kind, key)
    with _SHARED_LOCK:
        if entry in _SHARED:
            _SHARED.move_to_end(entry)
            return _SHARED[entry]
        key_lock = _KEY_LOCKS.setdefault(entry, threading.Lock())
    with key_lock:
        with _SHARED_LOCK:
            if entry in _SHARED:  # loaded by the thread we waited for
                _SHARED.move_to_end(entry)
                return _SHARED[entry]
        started = time.perf_counter()
        logger.info("loading %s (%s)", kind, key)
        value = load()
        logger.info("loaded %s (%s) in %.1f s", kind, key, time.perf_counter() - started)
        with _SHARED_LOCK:
            _SHARED[entry] = value
            while len(_SHARED) > MAX_SHARED:
                dropped, guard = _SHARED.popitem(last=False)
                _KEY_LOCKS.pop(dropped, None)
                if isinstance(guard, GuardProcess):
                    guard.close()  # a runner still holding it starts it again on its next call
        return value


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class CodeShieldRunner:
    name = "code_shield"

    def __init__(self, policy: Any) -> None:
        from guards.code_shield import CodeShieldGuard

        config = policy.code_shield
        self.config = config
        self.stages = policy.stages
        self.timeout_s = float(config.timeout_s)
        self.on_error = config.on_error
        self.guard = _shared("code_shield", repr(config.languages), lambda: CodeShieldGuard.from_policy(config))

    async def check(self, item: CheckInput) -> Verdict:
        from guards.code_shield import to_verdict

        rules = bool(self.stages.get(item.stage).code_shield.project_rules)  # the project's semgrep rules too
        if item.language is not None:
            result = await self.guard.scan_code(item.text, item.language, project_rules=rules)
        else:
            result = await self.guard.scan_text(item.text, project_rules=rules)
        actions = self.config.actions.model_dump()
        return to_verdict(result, stage=item.stage, actions=actions, on_error=self.on_error)


class _ModelGuardRunner:
    """A guard model named by the policy: its section (`llama_guard` / `prompt_guard`) gives timeout and on_error."""

    name = ""

    def __init__(self, policy: Any, source: str) -> None:
        config = getattr(policy, self.name)
        self.policy = policy
        self.config = config
        self.source = source
        self.timeout_s = float(config.timeout_s)
        self.on_error = config.on_error


class LlamaGuardRunner(_ModelGuardRunner):
    name = "llama_guard"

    def load(self) -> Any:
        """The policy's Llama Guard (weights loaded once per source, device and dtype; the category block and the
        threshold are this policy's); with `models.llama_guard.process`, a child process serving it."""
        from guards.llama_guard import load_causal_lm, resolve_source

        model_config = self.policy.models.llama_guard
        path = resolve_source(self.source)
        weights_key = f"{path}|{model_config.device}|{model_config.dtype}"
        config = self.config
        kwargs = {
            "path": path, "device": model_config.device, "dtype": model_config.dtype, "variant": model_config.variant,
            "enabled": config.categories, "excluded": config.excluded, "threshold": config.threshold,
            "custom": [(c.code, c.name, c.description) for c in config.custom], "source": self.source,
            "cached_conversations": config.cached_conversations,
        }  # fmt: skip
        key = f"{weights_key}|{model_config.variant}|{config.categories}|{config.excluded}|{config.custom}|" \
              f"{config.threshold}|{config.cached_conversations}"  # fmt: skip
        if model_config.process:
            return _shared("llama_guard_process", f"{key}|{model_config.threads}", lambda: _started(GuardProcess(
                "guards.stage_runners:build_llama_guard", kwargs, name="Llama Guard", threads=model_config.threads)))
        model = _shared("llama_guard_weights", weights_key, lambda: load_causal_lm(
            path, device=model_config.device, dtype=model_config.dtype))  # fmt: skip
        return _shared("llama_guard", key, lambda: build_llama_guard(model=model, **kwargs))

    _guard = load  # the earlier name, kept for callers written against it

    async def check(self, item: CheckInput) -> Verdict:
        started = time.perf_counter()
        guard = await in_thread(self.load)
        role = "agent" if item.role in ("assistant", "agent") else "user"
        result = await in_thread(lambda: guard.check_text(item.text, role=role, conversation=item.conversation))
        decision = self.config.action_for(result.categories) if result.unsafe else "allow"
        return Verdict(
            item.stage, self.name, decision, score=result.score, categories=result.categories if result.unsafe else (),
            reasons=tuple(result.reasons), latency_ms=_ms(started),
        )  # fmt: skip


class PromptGuardRunner(_ModelGuardRunner):
    name = "prompt_guard"

    def load(self) -> Any:
        """The loaded Prompt Guard (once per source, device and windowing, per process); with
        `models.prompt_guard.process`, a child process serving it."""
        from guards.prompt_guard import PromptGuard

        config = self.config
        device, dtype = self.policy.models.prompt_guard.device, self.policy.models.prompt_guard.dtype
        # The policy's stride is the step between window starts; PromptGuard takes the overlap.
        overlap = config.window_tokens - config.stride_tokens
        key = f"{self.source}|{device}|{dtype}|{config.window_tokens}|{overlap}|{config.batch_size}"
        kwargs = {"source": self.source, "device": device, "window_tokens": config.window_tokens,
                  "overlap_tokens": overlap, "batch_size": config.batch_size, "dtype": dtype}  # fmt: skip
        threads = self.policy.models.prompt_guard.threads
        if self.policy.models.prompt_guard.process:
            return _shared("prompt_guard_process", f"{key}|{threads}", lambda: _started(GuardProcess(
                "guards.prompt_guard:PromptGuard.load", kwargs, name="Prompt Guard", threads=threads)))
        return _shared("prompt_guard", key, lambda: PromptGuard.load(**kwargs))

    _guard = load  # the earlier name, kept for callers written against it

    async def check(self, item: CheckInput) -> Verdict:
        started = time.perf_counter()
        stage = self.policy.stages.get(item.stage).prompt_guard
        guard = await in_thread(self.load)
        result = await in_thread(guard.score, item.text, stage.score)
        decision = stage.action if result.score >= stage.threshold else "allow"
        return Verdict(
            item.stage, self.name, decision, score=result.score,
            reasons=(f"{stage.score} score {result.score:.3f} (threshold {stage.threshold}, {result.windows} "
                     f"window(s))",), latency_ms=_ms(started),
        )  # fmt: skip


def build_llama_guard(
    *, path: str, device: str, dtype: str, variant: str, enabled: Any, excluded: Any,
    custom: list[tuple[str, str, str]], threshold: float, cached_conversations: int, source: str, model: Any = None,
) -> Any:
    """A LlamaGuard with the policy's categories and threshold; loads the weights unless `model` is given (a child
    process builds its own from these plain arguments)."""
    from guards.llama_guard import LlamaGuard, load_causal_lm
    from guards.llama_guard_prompt import PromptCategory, prompt_categories
    from model.tokenizer import get_tokenizer

    if model is None:
        model = load_causal_lm(path, device=device, dtype=dtype)
    categories = prompt_categories(
        variant, enabled=enabled, excluded=excluded, custom=[PromptCategory(*c) for c in custom]  # type: ignore[arg-type]
    )
    local = Path(path)
    return LlamaGuard(
        model, tokenizer=get_tokenizer(local if local.is_dir() else None), categories=categories, excluded=excluded,
        threshold=threshold, source=source, cached_conversations=cached_conversations,
    )  # fmt: skip


def _started(process: GuardProcess) -> GuardProcess:
    process.start()
    return process


def default_runners(policy: Any, model_dirs: Mapping[str, Any]) -> dict[str, GuardRunner]:
    """Runners for every guard some stage enables. `model_dirs` maps llama_guard / prompt_guard to resolved sources
    (`assistant.models.guard_model_dirs`); without an entry the policy's source is used as written."""
    runners: dict[str, GuardRunner] = {}
    stages = [policy.stages.get(name) for name in ("user_input", "model_output", "tool_call", "tool_result", "code")]
    if any(s.llama_guard.enabled for s in stages):
        source = str(model_dirs.get("llama_guard") or policy.models.llama_guard.source)
        runners["llama_guard"] = LlamaGuardRunner(policy, source)
        if policy.models.llama_guard.backend == "openai":  # scored by a remote server (vLLM)
            from guards.llama_guard_remote import RemoteLlamaGuardRunner

            runners["llama_guard"] = RemoteLlamaGuardRunner(policy)
    if any(s.prompt_guard.enabled for s in stages):
        source = str(model_dirs.get("prompt_guard") or policy.models.prompt_guard.source)
        runners["prompt_guard"] = PromptGuardRunner(policy, source)
    if any(s.code_shield.enabled for s in stages):
        runners["code_shield"] = CodeShieldRunner(policy)
    return runners


__all__ = ["CodeShieldRunner", "LlamaGuardRunner", "Path", "PromptGuardRunner", "build_llama_guard", "default_runners"]
