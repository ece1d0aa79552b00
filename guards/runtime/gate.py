"""The one rule every text passes before it moves (docs/AGENT.md, "The invariant").

A text is shown to the user, given to the model or given to a tool only after `judge` ran, on exactly that text and
its conversation, every stage that the text's path names in `PATHS`, and only when the outcome lets it through. The
agent, the tool path (`tools.executor`), the CLI, the server and MCP all call `judge`; none calls a stage itself.

Outcomes: `pass`; `ask` (a guard asked for a human; only the tool-call path has one, elsewhere `ask` blocks);
`block`; `error` (a guard failed: always blocks, reported as a guard error). Stages are decided in the row's order;
the first one that does not pass ends the judgement. On the tool-call path they also run in that order (a call's
code reaches Code Shield only once the call itself passed, and a human is asked once, about both). The tool-result
path's two stages are classifiers of the same text with no side effect, so they run together and the slower one no
longer waits for the other (a tool result is on the way to the answer's first token, so its latency is the user's);
a later stage's check is cancelled once an earlier one stopped the text, and its verdict, if it came first, is not
reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from guards.policy.registry import (
    CODE,
    MODEL_OUTPUT,
    TOOL_CALL,
    TOOL_RESULT,
    USER_INPUT,
    Role,
    StageName,
    stage_declaration,
)

# A path is where a text is going, not a stage: two are named like the stage they start with (tests/
# test_registry_names.py allows these two names here), and their constants below keep callers from spelling them.
Path = Literal["user_text", "completion", "tool_call", "tool_result", "tool_definition"]
TOOL_CALL_PATH: Final[Path] = "tool_call"
TOOL_RESULT_PATH: Final[Path] = "tool_result"
Outcome = Literal["pass", "ask", "block", "error"]


@dataclass(frozen=True)
class Check:
    stage: StageName
    code: bool = False  # judges the call's code (code_interpreter) instead of the path's text

    @property
    def role(self) -> Role:
        """Whose text, for Llama Guard: a user's (or a third party's) or the model's, as the stage declares."""
        return stage_declaration(self.stage).role


# path -> the stages that judge its text, in order. Docs: docs/AGENT.md, "The invariant".
PATHS: dict[Path, tuple[Check, ...]] = {
    "user_text": (Check(USER_INPUT),),
    # every model completion, answer or tool call, its whole raw text, before any part is shown or executed
    "completion": (Check(MODEL_OUTPUT),),
    # a proposed call (JSON of name and arguments) and, for code_interpreter, its code
    TOOL_CALL_PATH: (Check(TOOL_CALL), Check(CODE, code=True)),
    # what the model will read and the user will be shown: the same text, judged as third-party text for the
    # model and as model-derived text for the user
    TOOL_RESULT_PATH: (Check(TOOL_RESULT), Check(MODEL_OUTPUT)),
    # a tool's definition that does not come from the deployer (a client's tools in `serve`): third-party text the
    # model will read in its system prompt, judged like a tool's result
    "tool_definition": (Check(TOOL_RESULT), Check(MODEL_OUTPUT)),
}
ASKABLE: frozenset[Path] = frozenset({TOOL_CALL_PATH})  # paths where a guard's `ask` reaches a human
CONCURRENT: frozenset[Path] = frozenset({TOOL_RESULT_PATH, "tool_definition"})  # stages run together (decided in order)
# A message that arrives without a judgement (a client's history in `serve`, a thread stored before judgement
# records existed) takes its role's path; each tool call it carries then takes `tool_call` as well.
ROLE_PATHS: dict[str, Path] = {
    "user": "user_text", "system": "user_text", "assistant": "completion", "tool": TOOL_RESULT_PATH,
}


@dataclass(frozen=True)
class Judgement:
    path: str
    text: str  # exactly the text judged (the one allowed to move when `passed`)
    outcome: Outcome
    results: tuple[Any, ...]  # guards.verdict.StageResult, in order
    flags: tuple[str, ...] = ()  # the guards that asked, for the human's approval request
    images: tuple[str, ...] = ()  # sha256 of each image judged with the text (model.images.ImageData), in order

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    @property
    def stops(self) -> bool:
        return self.outcome in ("block", "error")

    @property
    def last(self) -> Any:
        return self.results[-1] if self.results else None

    @property
    def stage(self) -> str:
        return self.last.stage if self.results else ""


def outcome_of(result: Any, *, askable: bool) -> Outcome:
    """The one reading of a StageResult: a guard error blocks (fail closed), `ask` blocks where nobody is asked."""
    if result.error is not None and result.decision != "allow":
        return "error"
    if result.decision == "block" or (result.decision == "ask" and not askable):
        return "block"
    return "ask" if result.decision == "ask" else "pass"


def describe_flags(result: Any) -> tuple[str, ...]:
    """Each verdict that asked, as the human reads it: stage, guard, categories, score."""
    out = []
    for v in result.verdicts:
        if v.decision != "ask":
            continue
        parts = [f"{v.stage} stage", v.guard]
        if v.categories:
            parts.append("categories " + ",".join(v.categories))
        if v.score is not None:
            parts.append(f"score {v.score:.2f}")
        out.append(" / ".join(parts))
    return tuple(out)


async def judge(
    pipeline: Any,
    path: Path,
    text: str,
    *,
    conversation: Sequence[tuple[str, str]] = (),
    code: str | None = None,
    thread_id: str | None = None,
    on_result: Callable[[Any], None] | None = None,
    images: tuple[Any, ...] = (),
) -> Judgement:
    """Judge `text` (and `code`, for a code_interpreter call) on the path's stages; `on_result` sees each stage's
    result as it comes (the agent emits the verdicts). `images` (model.images.ImageData) are judged with the text:
    each stage's guards that see images read them, and the judgement names them, so that only a message with
    exactly these images can be sealed with it."""
    digests = tuple(image.sha256 for image in images)
    askable = path in ASKABLE
    checks: list[tuple[Check, str]] = []
    for check in PATHS[path]:
        checked = code if check.code else text
        if checked is not None:  # the code check runs only on a call that carries code
            checks.append((check, checked))

    def run(check: Check, checked: str) -> Awaitable[Any]:
        return pipeline.check(
            check.stage, checked, role=check.role, conversation=conversation,
            language="python" if check.code else None, thread_id=thread_id, images=() if check.code else images,
        )

    # Stages that may run together start at once; the others start one by one, each after the one before passed.
    together = [asyncio.ensure_future(run(*pair)) for pair in checks] if path in CONCURRENT else None
    results: list[Any] = []
    flags: list[str] = []
    outcome: Outcome = "pass"
    try:
        for index, pair in enumerate(checks):
            result = await (together[index] if together is not None else run(*pair))
            results.append(result)
            if on_result is not None:
                on_result(result)
            step = outcome_of(result, askable=askable)
            if step in ("block", "error"):
                return Judgement(path, text, step, tuple(results), tuple(flags), digests)
            if step == "ask":
                outcome = "ask"
                flags.extend(describe_flags(result))
        return Judgement(path, text, outcome, tuple(results), tuple(flags), digests)
    finally:
        if together is not None:
            for task in together:
                task.cancel()
            await asyncio.gather(*together, return_exceptions=True)


def record(pipeline: Any, kind: str, *, thread_id: str | None = None, text: str | None = None, **fields: Any) -> None:
    """An audit record beyond verdicts (tool runs, approvals, refusals, errors, run starts) through the pipeline's
    `record` (`GuardPipeline.record`: the same hash chain as the verdicts); a pipeline without one (a test double)
    records nothing."""
    method = getattr(pipeline, "record", None)
    if callable(method):
        method(kind, thread_id=thread_id, text=text, **fields)


def policy_hash(policy: Any) -> str:
    """sha256 of the policy as validated (canonical JSON): which rules a run ran under, for the audit log."""
    import hashlib
    import json

    data = policy.model_dump(mode="json") if hasattr(policy, "model_dump") else repr(policy)
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
