"""The stage runner: run a stage's guards concurrently, fail closed, decide per the policy, audit every verdict.

`GuardPipeline.check(stage, text, ...)` starts every guard the policy enables for the stage at once, each under its
own timeout; the first verdict that blocks cancels the others (their verdicts are not needed: the stage is blocked).
Anything that goes wrong inside a guard - an exception, a timeout, output that is not a verdict, a model that will
not load - becomes a verdict with `error` set whose decision is the guard's `on_error` (default block).
Guard models are loaded once per process and shared (see `guards.runtime.runner`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from guards.audit.log import AuditLog, syslog_head_sink
from guards.errors import GuardImageError
from guards.policy import Policy
from guards.policy.registry import GUARD_NAMES
from guards.runtime.lookalikes import fold_lookalikes
from guards.runtime.registry import build_runners
from guards.runtime.runner import CheckInput, GuardRunner, elapsed_ms, in_thread
from guards.runtime.tracing import guard_attributes, verdict_attributes
from guards.verdict import DECISIONS, StageResult, Verdict
from model import telemetry

logger = logging.getLogger(__name__)


AuditSink = Callable[[Verdict, CheckInput], None]


@runtime_checkable
class RecordingSink(Protocol):
    """An audit sink that also writes the agent's other records (`PolicyAuditSink`); a plain verdict callable
    writes verdicts only."""

    def __call__(self, verdict: Verdict, item: CheckInput) -> None: ...

    def record(self, kind: str, *, thread_id: str | None = None, text: str | None = None, **fields: Any) -> None: ...


# How a stage runs its guards: (guard names in order, run one guard) -> the verdicts obtained, in that order.
Schedule = Callable[[Sequence[str], Callable[[str], Awaitable[Verdict]]], Awaitable[list[Verdict]]]


async def run_concurrently(names: Sequence[str], run: Callable[[str], Awaitable[Verdict]]) -> list[Verdict]:
    """Every guard at once; the first verdict that blocks cancels the others (the stage is blocked anyway)."""
    verdicts: dict[str, Verdict] = {}
    tasks = {asyncio.ensure_future(run(name)): name for name in names}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                verdicts[tasks[task]] = task.result()
            if any(v.decision == "block" for v in verdicts.values()):
                break  # the stage is blocked whatever the others say
    finally:
        for task in tasks:
            task.cancel()
    return [verdicts[name] for name in names if name in verdicts]


async def run_sequentially(names: Sequence[str], run: Callable[[str], Awaitable[Verdict]]) -> list[Verdict]:
    """One guard after another, stopping at the first block (how Llama Stack and LlamaFirewall run shields)."""
    verdicts: list[Verdict] = []
    for name in names:
        verdicts.append(await run(name))
        if verdicts[-1].decision == "block":
            break
    return verdicts


class GuardPipeline:
    def __init__(
        self,
        policy: Policy,
        runners: Mapping[str, GuardRunner],
        *,
        audit: AuditSink | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        self.policy = policy
        self.runners = dict(runners)
        self.audit = audit
        self.schedule: Schedule = schedule or run_concurrently
        self._span_attributes: dict[tuple[str, str, str], dict[str, Any]] = {}  # (stage, guard, role) -> attributes

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        *,
        model_dirs: Mapping[str, str | Path] | None = None,
        runners: Mapping[str, GuardRunner] | None = None,
        audit: AuditSink | bool | None = True,
        policy_path: Path | None = None,
        default_audit_path: Path | None = None,
    ) -> GuardPipeline:
        """Runners for the guards the policy's stages use (loaded lazily, shared per process); `runners` overrides
        some of them (tests inject failing guards this way); `audit=True` writes the policy's audit log (at
        `default_audit_path` when the policy names none: the caller's data folder)."""
        built = build_runners(policy, model_dirs or {})
        built.update(runners or {})
        sink = audit_sink_for(policy, policy_path, default_audit_path) if audit is True else (audit or None)
        return cls(policy, built, audit=sink)

    def enabled_guards(self, stage: str) -> list[str]:
        config = self.policy.stages.get(stage)
        return [name for name in GUARD_NAMES if config.guard(name).enabled]

    def image_guards(self, stage: str) -> tuple[str, ...]:
        """The enabled guards of `stage` that see images (`GuardRunner.sees_images`: today an in-process Llama Guard
        4 whose checkpoint has a vision tower). Empty: images at this stage could be judged by no guard."""
        return tuple(name for name in self.enabled_guards(stage)
                     if name in self.runners and self.runners[name].sees_images)

    async def check(
        self,
        stage: str,
        text: str,
        *,
        role: str = "user",
        conversation: Sequence[tuple[str, str]] = (),
        language: str | None = None,
        thread_id: str | None = None,
        images: tuple[Any, ...] = (),
    ) -> StageResult:
        """The stage's verdict on `text`. When the text has look-alike characters (fullwidth or compatibility forms,
        zero-width or bidi controls: `fold_lookalikes` changes it), the guards also judge the folded text - one extra
        check, only then - and for each guard the stricter of its two verdicts counts."""
        context = tuple((r, t) for r, t in conversation)
        folded = fold_lookalikes(text)
        if folded == text:
            return await self._check_text(CheckInput(stage, text, role, context, language, thread_id, images))
        results = await asyncio.gather(
            self._check_text(CheckInput(stage, text, role, context, language, thread_id, images)),
            self._check_text(CheckInput(stage, folded, role, context, language, thread_id, images)),
        )
        return _stricter(stage, self.enabled_guards(stage), *results)

    async def _check_text(self, item: CheckInput) -> StageResult:
        names = self.enabled_guards(item.stage)
        # Traced, each guard's check is a span of its own, a child of what the text belongs to (no span for the
        # stage: its guards' spans say all it would, at one span less per check).
        run = self._run_one if telemetry.current() is None else self._run_traced
        ordered = await self.schedule(names, lambda name: run(name, item))
        for verdict in ordered:
            self._audit(verdict, item)
        result = StageResult.from_verdicts(item.stage, ordered)
        logger.debug("%s: %s (%s)", item.stage, result.decision,
                     ", ".join(f"{v.guard}={v.decision}" for v in ordered) or "no guard")
        return result

    async def _run_traced(self, name: str, item: CheckInput) -> Verdict:
        key = (item.stage, name, item.role)
        attributes = self._span_attributes.get(key)
        if attributes is None:  # the same for every check of this guard at this stage: built once
            attributes = self._span_attributes[key] = guard_attributes(self.policy, *key)
        with telemetry.span(f"guard {name}", attributes) as span:
            verdict = await self._run_one(name, item)
            telemetry.annotate(span, verdict_attributes(verdict))
            return verdict

    async def _run_one(self, name: str, item: CheckInput) -> Verdict:
        started = time.perf_counter()
        runner = self.runners.get(name)
        if runner is None:
            return _error_verdict(item.stage, name, "block", f"no {name} guard is configured", started)
        try:
            # Loading the model (once per process) is not part of a check's time budget; a failed load is a guard
            # error like any other.
            await prepare(runner)
            verdict = await asyncio.wait_for(runner.check(item), runner.timeout_s)
        except TimeoutError:
            logger.warning("%s timed out after %gs at the %s stage (on_error: %s)", name, runner.timeout_s, item.stage,
                           runner.on_error)
            return _error_verdict(item.stage, name, runner.on_error, f"timed out after {runner.timeout_s:g} s", started)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this check was cancelled from outside (another guard blocked, or the turn ended)
            # The guard's own work was cancelled (a worker torn down): a guard failure like any other.
            return _error_verdict(item.stage, name, runner.on_error, "CancelledError: the guard's work was cancelled",
                                  started)
        except GuardImageError as exc:  # images it cannot see: blocked whatever on_error says, never judged as text
            logger.warning("%s cannot see the images at the %s stage: %s", name, item.stage, exc)
            return _error_verdict(item.stage, name, "block", f"{type(exc).__name__}: {exc}", started)
        except Exception as exc:  # any failure of a guard is a guard error, decided by on_error (fail closed)
            logger.warning("%s failed at the %s stage (on_error: %s)", name, item.stage, runner.on_error, exc_info=True)
            return _error_verdict(item.stage, name, runner.on_error, f"{type(exc).__name__}: {exc}", started)
        if not isinstance(verdict, Verdict):
            return _error_verdict(item.stage, name, runner.on_error, f"returned {type(verdict).__name__}", started)
        if verdict.score is not None and not (isinstance(verdict.score, int | float) and math.isfinite(verdict.score)):
            # A NaN score compares false against every threshold, which would read as "allow": never trust it.
            return _error_verdict(item.stage, name, runner.on_error, f"returned a score of {verdict.score!r}", started)
        return verdict

    def _audit(self, verdict: Verdict, item: CheckInput) -> None:
        if self.audit is not None:
            self.audit(verdict, item)

    def record(self, kind: str, *, thread_id: str | None = None, text: str | None = None, **fields: Any) -> None:
        """Write one non-verdict audit record (tool_run, approval_request, approval_decision, refusal, error,
        run_start...) into the same hash chain as the verdicts; `text` is stored per the policy's `audit.texts`.
        A no-op when audit is off (or the sink is a plain verdict callable). Like verdict records, a write that
        fails raises (OSError; ValueError for reserved or non-JSON fields): an action that cannot be audited is not
        silently let through."""
        if isinstance(self.audit, RecordingSink):
            self.audit.record(kind, thread_id=thread_id, text=text, **fields)


async def prepare(runner: GuardRunner) -> None:
    await in_thread(runner.load)


def _stricter(stage: str, names: Sequence[str], original: StageResult, folded: StageResult) -> StageResult:
    """Per guard, the more severe verdict of the two checks (the higher score on a tie; the original's otherwise)."""
    firsts = {v.guard: v for v in original.verdicts}
    seconds = {v.guard: v for v in folded.verdicts}
    chosen = []
    for name in names:
        first, second = firsts.get(name), seconds.get(name)
        if first is None or (second is not None and _severity(second) > _severity(first)):
            if second is not None:
                chosen.append(replace(second, reasons=(*second.reasons, "judged on the look-alike-folded text")))
        else:
            chosen.append(first)
    return StageResult.from_verdicts(stage, chosen)


def _severity(verdict: Verdict) -> tuple[int, float]:
    return DECISIONS.index(verdict.decision), verdict.score if verdict.score is not None else -1.0


def _error_verdict(stage: str, guard: str, on_error: str, error: str, started: float) -> Verdict:
    decision: Literal["allow", "block"] = "allow" if on_error == "allow" else "block"
    return Verdict(stage, guard, decision, latency_ms=elapsed_ms(started), error=error)


def audit_sink_for(
    policy: Policy, policy_path: Path | None = None, default_path: Path | None = None
) -> AuditSink | None:
    """The policy's hash-chained audit log as a sink (`audit.path` relative to the policy file's folder; else
    `default_path`, which the assistant layer gives: this layer does not know where the user's data lives)."""
    configured = policy.audit.path
    if configured is None:
        if default_path is None:
            raise ValueError("the policy sets no audit.path and no default audit path was given")
        path = Path(default_path)
    else:
        path = Path(configured).expanduser()
        if not path.is_absolute() and policy_path is not None:
            path = policy_path.parent / path
    head_sink = syslog_head_sink() if policy.audit.head_syslog else None
    return PolicyAuditSink(AuditLog(path, texts=policy.audit.texts, head_sink=head_sink))


@dataclass(frozen=True)
class PolicyAuditSink:
    """The verdict sink over an audit log, which can also write the agent's other records (`record`)."""

    log: AuditLog

    def __call__(self, verdict: Verdict, item: CheckInput) -> None:
        self.log.append_verdict(verdict, thread_id=item.thread_id, text=item.text,
                                images=tuple(image.sha256 for image in item.images))

    def record(self, kind: str, *, thread_id: str | None = None, text: str | None = None, **fields: Any) -> None:
        self.log.append(kind, thread_id=thread_id, text=text, **fields)


__all__ = [
    "AuditSink",
    "CheckInput",
    "GuardPipeline",
    "GuardRunner",
    "RecordingSink",
    "Schedule",
    "in_thread",
    "run_concurrently",
    "run_sequentially",
]
