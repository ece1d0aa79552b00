"""The graph's nodes up to the model's completion (tool nodes: tool_nodes.py). Each reads the state and its run's
`TurnContext` (`runtime.context`), emits events, and routes with a Command whose destinations its return annotation
declares (routes.py). The helpers that end a turn return the state update; the node says where it goes.

Invariant (docs/AGENT.md): a text is shown, stored for the model or given to a tool only after
`guards.runtime.gate.judge` passed it on its path; blocked text is never emitted, never stored in `messages` and never
given to a tool; every guard error ends the turn as a guard-error refusal (fail closed).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from assistant.agent.answer_stream import AnswerBlocked, AnswerStream
from assistant.agent.deps import AgentDeps
from assistant.agent.provenance import LEDGER, VERSION, Unjudged, admit, seal, seal_trusted
from assistant.agent.rejudge import rejudge
from assistant.agent.routes import (
    APPROVAL,
    END,
    EXECUTE,
    INPUT_GUARD,
    MODEL,
    REVIEW,
    ToEnd,
    ToModel,
    ToReview,
)
from assistant.agent.speculation import Generation
from assistant.agent.state import AgentState, MessageDict, TurnData, message_from_dict, new_turn
from assistant.agent.turn import TurnContext, guard_context
from assistant.agent.window import ContextOverflow, Window, fit_window
from assistant.events import Error, Final, Notice, Refusal, TokenDelta
from guards.policy.registry import CODE_SHIELD, MODEL_OUTPUT, USER_INPUT
from guards.runtime.gate import Judgement, judge, record
from model import telemetry
from model.backends.base import GenerationParams
from model.prompt_format import dialog_images

__all__ = ["APPROVAL", "EXECUTE", "INPUT_GUARD", "MODEL", "REVIEW", "input_guard", "model"]  # names: routes.py


# --- how a turn ends (each returns the update; the node routes to END) ------------------------------------------


def refuse(ctx: TurnContext, state: AgentState, stage: str, judgement: Judgement | None = None,
           message: str = "") -> AgentState:
    """End the turn with the policy's refusal; roll the turn back to its user message plus the refusal, so nothing
    the turn produced after the user's (passed) message stays in what the model sees."""
    guard_error = judgement is not None and judgement.outcome == "error"
    refusals = ctx.deps.policy.refusals
    text = message or (refusals.guard_error if guard_error else refusals.for_stage(stage))
    record(ctx.deps.pipeline, "refusal", thread_id=ctx.thread_id, text=text, stage=stage, guard_error=guard_error)
    ctx.emit(Refusal(stage=stage, message=text, guard_error=guard_error))
    turn = state.get("turn") or {}
    messages = list(state.get("messages") or [])
    if "start" in turn:
        reply = seal_trusted({"role": "assistant", "content": text}, "agent" if message else "policy")
        messages = [*messages[: turn["start"] + 1], reply]
    return {"messages": messages, "turn": {**turn, "outcome": "refusal", "pending": []}}


def refuse_unjudged(ctx: TurnContext, state: AgentState, problem: Exception) -> AgentState:
    """A message without a judgement on record was on its way to the model: a guard error (fail closed), named."""
    record(ctx.deps.pipeline, "error", thread_id=ctx.thread_id, where="provenance", error=str(problem))
    ctx.emit(Notice(kind="unjudged_message", message=str(problem)))
    text = ctx.deps.policy.refusals.guard_error
    record(ctx.deps.pipeline, "refusal", thread_id=ctx.thread_id, text=text, stage="provenance", guard_error=True)
    ctx.emit(Refusal(stage="provenance", message=text, guard_error=True))
    return {"turn": {**(state.get("turn") or {}), "outcome": "refusal", "pending": []}}


def fail(ctx: TurnContext, state: AgentState, kind: str, message: str) -> AgentState:
    record(ctx.deps.pipeline, "error", thread_id=ctx.thread_id, where=kind, error=message)
    ctx.emit(Error(kind=kind, message=message))
    return {"turn": {**(state.get("turn") or {}), "outcome": "error", "pending": []}}


def after_failure(ctx: TurnContext, state: AgentState, turn: TurnData, update: AgentState,
                  what: str) -> AgentState | None:
    """A parse error or tool error went back to the model: None to go on, or the update that ends the turn past
    agent.max_tool_retries. The one place that counts failures."""
    turn["tool_failures"] = turn.get("tool_failures", 0) + 1
    if turn["tool_failures"] > ctx.deps.policy.agent.max_tool_retries:
        message = f"gave up after {turn['tool_failures']} failed tool calls ({what})"
        return fail(ctx, {**state, "turn": turn, **update}, "tool", message)
    return None


# --- input guard ----------------------------------------------------------------------------------------------


async def input_guard(state: AgentState, runtime: Runtime[TurnContext]) -> Command[Literal[ToModel, ToEnd]]:
    ctx = runtime.context
    text = ctx.text  # the user's message: `Assistant.stream` -> `Agent.stream` -> this run's TurnContext
    messages = list(state.get("messages") or [])
    if state.get(LEDGER) != VERSION and messages:  # stored before judgement records: judged once, now
        checked = await rejudge(ctx.deps.pipeline, messages, thread_id=ctx.thread_id, on_result=ctx.emit_verdicts)
        if checked.stopped is not None:
            return Command(update=refuse_stored(ctx, checked.stopped, checked.stopped_index), goto=END)
        messages = checked.messages
    message: MessageDict = {"role": "user", "content": text}
    if ctx.images:
        message["images"] = [image.to_dict() for image in ctx.images]
    else:  # The model starts on the message while the guards read it; its output is used only if they pass. Never
        # with images: no model reads an image's pixels before its guard passed it.
        await speculate(ctx, [*messages, message], dropped=state.get("dropped", 0), turn_start=len(messages))
    judgement = await ctx.judge("user_text", text, messages, images=ctx.images)
    if not judgement.passed:
        await ctx.speculation.discard()
        return Command(update=refuse(ctx, {"messages": messages, "turn": {}}, USER_INPUT, judgement), goto=END)
    turn = new_turn(len(messages))
    messages.append(seal(message, judgement))
    return Command(update={"messages": messages, "turn": turn, LEDGER: VERSION}, goto=MODEL)


def refuse_stored(ctx: TurnContext, judgement: Judgement, index: int | None) -> AgentState:
    """A thread stored before judgement records holds a message that no longer passes: nothing of it reaches the
    model, and the error says which message and why (the thread is left as it was)."""
    guard_error = judgement.outcome == "error"
    why = "a guard failed on it" if guard_error else f"the {judgement.stage} stage blocks it now"
    message = (f"This conversation was stored before messages carried judgement records, and its message {index} "
               f"no longer passes ({why}); start a new conversation.")
    record(ctx.deps.pipeline, "refusal", thread_id=ctx.thread_id, text=message, stage=judgement.stage,
           guard_error=guard_error)
    ctx.emit(Refusal(stage=judgement.stage, message=message, guard_error=guard_error))
    return {"turn": {"outcome": "refusal", "pending": []}}


# --- model ------------------------------------------------------------------------------------------------------


def generation_params(deps: AgentDeps, window: Window) -> GenerationParams:
    """The policy's sampling settings, and the window's images: the model reads exactly the images its prompt holds."""
    main = deps.policy.models.main
    return GenerationParams(max_new_tokens=main.max_new_tokens, temperature=main.temperature, top_p=main.top_p,
                            images=window.images)


def prompt_window(
    deps: AgentDeps, messages: list[MessageDict], *, dropped: int, turn_start: int, unsealed_tail: int = 0
) -> Window:
    """The prompt for `messages` within the context window. The one way from a thread to model input: every message
    that may be encoded (any window is a suffix of messages[dropped:]) must carry a matching judgement record
    (`provenance.admit`; raises Unjudged), checked once before the window is fitted."""
    admit(messages[dropped:], first_index=dropped, unsealed_tail=unsealed_tail)
    window = fit_window(messages, lambda ms: deps.encode([message_from_dict(m) for m in ms]),
                        budget=deps.prompt_budget, already_dropped=dropped, current_turn_start=turn_start)
    with_images = [message_from_dict(m) for m in messages[window.start:] if m.get("images")]
    return dataclasses.replace(window, images=dialog_images(with_images)) if with_images else window


async def speculate(ctx: TurnContext, messages: list[MessageDict], *, dropped: int, turn_start: int) -> None:
    """Start the next model step on `messages` while guards decide whether the model may see the last one (see
    `speculation.py`); the model node uses it only if its own prompt is exactly this one."""
    if not ctx.deps.performance.speculates(ctx.deps.backend):
        return
    try:  # the last message is being judged right now: the model's output is used only if it passes
        window = prompt_window(ctx.deps, messages, dropped=dropped, turn_start=turn_start, unsealed_tail=1)
    except (ContextOverflow, Unjudged):
        return
    await ctx.speculation.start(ctx.deps.backend, window.prompt_ids, generation_params(ctx.deps, window))


class CompletionGate:
    """The agent's `AnswerGate`: each check judges the answer so far on the completion path, with the thread's
    conversation; its verdicts are shown, and released text is shown as TokenDelta events."""

    def __init__(self, ctx: TurnContext, messages: list[MessageDict], trace: telemetry.Trace | None = None) -> None:
        self._ctx = ctx
        self._conversation = guard_context(messages)
        self._trace = trace  # the model call's span: its checks are its children

    async def check(self, text: str) -> Judgement:
        # verdicts are shown by `on_judgement`, in answer order, not as each concurrent check finishes
        with telemetry.within(self._trace):
            return await judge(self._ctx.deps.pipeline, "completion", text, conversation=self._conversation,
                               thread_id=self._ctx.thread_id)

    def on_judgement(self, judgement: Judgement) -> None:
        for result in judgement.results:
            self._ctx.emit_verdicts(result)

    def release(self, text: str) -> None:
        self._ctx.emit(TokenDelta(text=text))


def output_stream(ctx: TurnContext, messages: list[MessageDict], trace: telemetry.Trace | None = None) -> AnswerStream:
    """How this model call's answer reaches the user: streamed through checks of the answer so far, streamed as is
    when no output guard is enabled, or held for one check of the whole answer (streaming moderation off)."""
    guards = ctx.deps.pipeline.enabled_guards(MODEL_OUTPUT)
    moderation = ctx.deps.policy.agent.streaming_moderation
    return AnswerStream(
        CompletionGate(ctx, messages, trace), moderated=bool(guards), streaming=moderation.enabled,
        code_shield=CODE_SHIELD in guards, chunk_chars=moderation.chunk_chars,
        first_chunk_chars=moderation.first_chunk_chars,
    )


async def model(state: AgentState, runtime: Runtime[TurnContext]) -> Command[Literal[ToModel, ToReview, ToEnd]]:
    ctx = runtime.context
    deps = ctx.deps
    turn = state["turn"].copy()
    messages = list(state["messages"])
    if turn["steps"] >= deps.policy.agent.max_steps:
        message = f"I stopped: this turn reached the policy's step limit ({deps.policy.agent.max_steps})."
        return Command(update=refuse(ctx, state, "agent", message=message), goto=END)
    turn["steps"] += 1
    dropped = state.get("dropped", 0)
    try:
        window = prompt_window(deps, messages, dropped=dropped, turn_start=turn["start"])
    except ContextOverflow as exc:
        return Command(update=fail(ctx, state, "bad_input", str(exc)), goto=END)
    except Unjudged as exc:
        return Command(update=refuse_unjudged(ctx, {**state, "turn": turn}, exc), goto=END)
    if window.newly_dropped:
        ctx.emit(Notice(kind="context_trimmed", message=f"The {window.newly_dropped} oldest messages no longer fit "
                        "the model's context window and were left out of the prompt."))
    params = generation_params(deps, window)
    generation = await ctx.speculation.take(window.prompt_ids, params)
    if generation is None:  # nothing ran ahead for exactly this prompt
        generation = Generation(deps.backend, window.prompt_ids, params)
    stream = output_stream(ctx, messages, generation.trace)
    try:  # text is shown only after the check covering it passed; bounded by models.main.timeout_s
        completion = await stream.consume(generation, deps.policy.models.main.timeout_s)
    except AnswerBlocked as blocked:  # a streamed check failed: generation stopped, nothing after it shown
        return Command(update=refuse(ctx, {**state, "turn": turn}, MODEL_OUTPUT, blocked.judgement), goto=END)
    except Exception as exc:  # a backend failure of any kind ends the turn as a model error
        return Command(update=fail(ctx, {**state, "turn": turn}, "model_backend", f"{type(exc).__name__}: {exc}"),
                       goto=END)
    if completion.dropped:  # text after a stop token is no part of the message: never stored, shown or sent
        ctx.emit(Notice(kind="text_after_stop", message="The model produced text after its end-of-turn token; it "
                        "was discarded unread."))
    parsed = completion.parse(builtin_tools=deps.builtin_names, tools=deps.custom_names)
    stored = {"raw": completion.raw, "stop_reason": completion.stop_reason,
              "special_spans": [list(span) for span in completion.raw_spans]}
    update: AgentState = {"dropped": window.start}
    if not parsed.tool_calls and parsed.error is None:
        answered = await finish_answer(ctx, state, stream, turn, messages, update, parsed.content or "", stored)
        return Command(update=answered, goto=END)
    await stream.abandon()  # it was not an answer after all: no more of it is shown
    # A tool call (or what failed to parse as one) is model output too: the whole raw completion passes the
    # completion path before any of it is stored, shown or run.
    with telemetry.within(generation.trace):  # a check of the model call: its child
        judgement = await ctx.judge("completion", completion.raw, messages)
    if not judgement.passed:
        return Command(update=refuse(ctx, {**state, "turn": turn}, MODEL_OUTPUT, judgement), goto=END)
    if parsed.error is not None:
        messages.append(seal({"role": "assistant", "content": completion.raw, **stored}, judgement))
        messages.append(seal_trusted({"role": "tool", "content": "Error: the tool call could not be parsed: "
                                      f"{parsed.error}", "notice": True}, "agent"))
        if ended := after_failure(ctx, state, turn, update, f"unparseable tool call: {parsed.error}"):
            return Command(update=ended, goto=END)
        return Command(update={**update, "messages": messages, "turn": turn}, goto=MODEL)
    limit = deps.policy.tools.max_calls_per_turn
    if turn.get("calls", 0) + len(parsed.tool_calls) > limit:  # the one place calls per turn are counted
        message = (f"the model proposed {len(parsed.tool_calls)} tool calls after {turn.get('calls', 0)} in this "
                   f"turn; the policy allows {limit} per turn (tools.max_calls_per_turn)")
        return Command(update=fail(ctx, {**state, "turn": turn}, "tool", message), goto=END)
    turn["calls"] = turn.get("calls", 0) + len(parsed.tool_calls)
    # ids unique across threads, replicas and restarts: a client or an approval names exactly one call
    calls = [
        {"name": call.name, "arguments": dict(call.arguments), "call_id": call.call_id or new_call_id()}
        for call in parsed.tool_calls
    ]
    messages.append(seal({"role": "assistant", "content": parsed.content or "", "tool_calls": calls, **stored},
                         judgement))
    turn["pending"] = [{**c, "status": "proposed"} for c in calls]
    return Command(update={**update, "messages": messages, "turn": turn}, goto=REVIEW)


def new_call_id() -> str:
    return f"call-{uuid.uuid4().hex[:24]}"


async def finish_answer(
    ctx: TurnContext, state: AgentState, stream: AnswerStream, turn: TurnData, messages: list[MessageDict],
    update: AgentState, answer: str, stored: dict[str, Any],
) -> AgentState:
    """The whole answer judged (inside the model node: an answer that fails is never checkpointed, emitted or
    stored), the rest of it released, then stored with its raw text; or the refusal. Either ends the turn."""
    try:
        judgement = await stream.finish(answer)
    except AnswerBlocked as blocked:
        return refuse(ctx, {**state, "turn": turn}, MODEL_OUTPUT, blocked.judgement)
    if stored["raw"] != answer:  # the model reads `raw` again next turn: those exact bytes are judged too
        judgement = await ctx.judge("completion", stored["raw"], messages)
        if not judgement.passed:
            return refuse(ctx, {**state, "turn": turn}, MODEL_OUTPUT, judgement)
    ctx.emit(Final(text=answer))
    messages.append(seal({"role": "assistant", "content": answer, **stored}, judgement))
    turn["outcome"] = "final"
    return {**update, "messages": messages, "turn": turn}
