"""The graph's nodes up to the model's completion. Each reads the state, emits events through LangGraph's stream
writer, and routes with Command (tool nodes: tool_nodes.py).

Invariant (docs/AGENT.md): a text is shown, stored for the model or given to a tool only after `guards.gate.judge`
passed it on its path; blocked text is never emitted, never stored in `messages` and never given to a tool; every
guard error ends the turn as a guard-error refusal (fail closed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END
from langgraph.types import Command

from assistant.agent.answer_stream import AnswerBlocked, AnswerStream
from assistant.agent.deps import AgentDeps
from assistant.agent.provenance import LEDGER, VERSION, Unjudged, admit, seal, seal_trusted
from assistant.agent.rejudge import rejudge
from assistant.agent.speculation import Generation, speculation_slot
from assistant.agent.state import AgentState, MessageDict, TurnData, message_from_dict, new_turn
from assistant.agent.window import ContextOverflow, fit_window
from assistant.events import Error, Event, Final, GuardVerdict, Notice, Refusal
from guards.gate import Judgement, judge, record

# Node names.
INPUT_GUARD = "input_guard"
MODEL = "model"
REVIEW = "review_calls"
APPROVAL = "approval"
EXECUTE = "execute"

CONTEXT_MESSAGES = 4  # earlier user/assistant messages Llama Guard sees as context


@dataclass(frozen=True)
class Incoming:
    """The user's new message, passed in the run's config rather than the state: LangGraph checkpoints the state
    (and string config values as metadata), and text the input guards block must not be stored anywhere."""

    text: str


INCOMING_KEY = "assistant_incoming"


def incoming_text(config: RunnableConfig) -> str:
    incoming = (config.get("configurable") or {}).get(INCOMING_KEY)
    return incoming.text if isinstance(incoming, Incoming) else ""


def thread_of(config: RunnableConfig) -> str | None:
    return (config.get("configurable") or {}).get("thread_id")


def emit(event: Event) -> None:
    get_stream_writer()(event)


def emit_verdicts(result: Any) -> None:
    for v in result.verdicts:
        emit(
            GuardVerdict(
                stage=v.stage, guard=v.guard, decision=v.decision, score=v.score, categories=tuple(v.categories),
                reasons=tuple(v.reasons), latency_ms=v.latency_ms, error=v.error,
            )
        )  # fmt: skip


async def judged(deps: AgentDeps, config: RunnableConfig, path: Any, text: str, messages: list[MessageDict],
                 code: str | None = None) -> Judgement:  # fmt: skip
    """`guards.gate.judge` with the thread's conversation as context, its verdicts emitted as they come."""
    return await judge(deps.pipeline, path, text, conversation=guard_context(messages), code=code,
                       thread_id=thread_of(config), on_result=emit_verdicts)  # fmt: skip


def refuse(deps: AgentDeps, state: AgentState, stage: str, judgement: Judgement | None = None, message: str = "",
           thread_id: str | None = None) -> Command:  # fmt: skip
    """End the turn with the policy's refusal; roll the turn back to its user message plus the refusal, so nothing
    the turn produced after the user's (passed) message stays in what the model sees."""
    guard_error = judgement is not None and judgement.outcome == "error"
    refusals = deps.policy.refusals
    text = message or (refusals.guard_error if guard_error else refusals.for_stage(stage))
    record(deps.pipeline, "refusal", thread_id=thread_id, text=text, stage=stage, guard_error=guard_error)
    emit(Refusal(stage=stage, message=text, guard_error=guard_error))
    turn = state.get("turn") or {}
    messages = list(state.get("messages") or [])
    if "start" in turn:
        reply = seal_trusted({"role": "assistant", "content": text}, "agent" if message else "policy")
        messages = [*messages[: turn["start"] + 1], reply]
    return Command(update={"messages": messages, "turn": {**turn, "outcome": "refusal", "pending": []}}, goto=END)


def refuse_unjudged(deps: AgentDeps, state: AgentState, problem: Exception, thread_id: str | None) -> Command:
    """A message without a judgement on record was on its way to the model: a guard error (fail closed), named."""
    record(deps.pipeline, "error", thread_id=thread_id, where="provenance", error=str(problem))
    emit(Notice(kind="unjudged_message", message=str(problem)))
    text = deps.policy.refusals.guard_error
    record(deps.pipeline, "refusal", thread_id=thread_id, text=text, stage="provenance", guard_error=True)
    emit(Refusal(stage="provenance", message=text, guard_error=True))
    turn = state.get("turn") or {}
    return Command(update={"turn": {**turn, "outcome": "refusal", "pending": []}}, goto=END)


def fail(deps: AgentDeps, state: AgentState, kind: str, message: str, thread_id: str | None = None) -> Command:
    record(deps.pipeline, "error", thread_id=thread_id, where=kind, error=message)
    emit(Error(kind=kind, message=message))
    turn = state.get("turn") or {}
    return Command(update={"turn": {**turn, "outcome": "error", "pending": []}}, goto=END)


def after_failure(deps: AgentDeps, state: AgentState, turn: TurnData, update: dict[str, Any], what: str,
                  thread_id: str | None = None) -> Command | None:  # fmt: skip
    """A parse error or tool error went back to the model: None to go on, or the end of the turn past
    agent.max_tool_retries. The one place that counts failures."""
    turn["tool_failures"] = turn.get("tool_failures", 0) + 1
    if turn["tool_failures"] > deps.policy.agent.max_tool_retries:
        message = f"gave up after {turn['tool_failures']} failed tool calls ({what})"
        return fail(deps, {**state, "turn": turn, **update}, "tool", message, thread_id)
    return None


def guard_context(messages: list[MessageDict]) -> tuple[tuple[str, str], ...]:
    """Earlier plain user/assistant messages (no tool traffic), as (role, text) pairs, for Llama Guard's context:
    the user's request of this turn is always among them."""
    pairs = [
        (m["role"], m["content"])
        for m in messages
        if m["role"] in ("user", "assistant") and not m.get("tool_calls") and m.get("content")
    ]
    return tuple(pairs[-CONTEXT_MESSAGES:])


# --- input guard ----------------------------------------------------------------------------------------------


def make_input_guard(deps: AgentDeps):
    async def input_guard(state: AgentState, config: RunnableConfig) -> Command:
        text = incoming_text(config)
        messages = list(state.get("messages") or [])
        if state.get(LEDGER) != VERSION and messages:  # stored before judgement records: judged once, now
            checked = await rejudge(deps.pipeline, messages, thread_id=thread_of(config), on_result=emit_verdicts)
            if checked.stopped is not None:
                return refuse_stored(deps, checked.stopped, checked.stopped_index, thread_of(config))
            messages = checked.messages
        # The model starts on the message while the guards read it; its output is used only if they pass.
        await speculate(deps, config, [*messages, {"role": "user", "content": text}], dropped=state.get("dropped", 0),
                        turn_start=len(messages))  # fmt: skip
        judgement = await judged(deps, config, "user_text", text, messages)
        if not judgement.passed:
            await discard_speculation(config)
            return refuse(deps, {"messages": messages, "turn": {}}, "user_input", judgement,
                          thread_id=thread_of(config))  # fmt: skip
        turn = new_turn(len(messages))
        messages.append(seal({"role": "user", "content": text}, judgement))
        return Command(update={"messages": messages, "turn": turn, LEDGER: VERSION}, goto=MODEL)

    return input_guard


def refuse_stored(deps: AgentDeps, judgement: Judgement, index: int | None, thread_id: str | None) -> Command:
    """A thread stored before judgement records holds a message that no longer passes: nothing of it reaches the
    model, and the error says which message and why (the thread is left as it was)."""
    guard_error = judgement.outcome == "error"
    why = "a guard failed on it" if guard_error else f"the {judgement.stage} stage blocks it now"
    message = (f"This conversation was stored before messages carried judgement records, and its message {index} "
               f"no longer passes ({why}); start a new conversation.")  # fmt: skip
    record(deps.pipeline, "refusal", thread_id=thread_id, text=message, stage=judgement.stage, guard_error=guard_error)
    emit(Refusal(stage=judgement.stage, message=message, guard_error=guard_error))
    return Command(update={"turn": {"outcome": "refusal", "pending": []}}, goto=END)


# --- model ------------------------------------------------------------------------------------------------------


def generation_params(deps: AgentDeps) -> Any:
    from model.backends.base import GenerationParams

    main = deps.policy.models.main
    return GenerationParams(max_new_tokens=main.max_new_tokens, temperature=main.temperature, top_p=main.top_p)


def prompt_window(
    deps: AgentDeps, messages: list[MessageDict], *, dropped: int, turn_start: int, unsealed_tail: int = 0
) -> Any:
    """The prompt for `messages` within the context window. The one way from a thread to model input: every message
    that may be encoded (any window is a suffix of messages[dropped:]) must carry a matching judgement record
    (`provenance.admit`; raises Unjudged), checked once before the window is fitted."""
    admit(messages[dropped:], first_index=dropped, unsealed_tail=unsealed_tail)
    return fit_window(messages, lambda ms: deps.encode([message_from_dict(m) for m in ms]), budget=deps.prompt_budget,
                      already_dropped=dropped, current_turn_start=turn_start)  # fmt: skip


async def speculate(
    deps: AgentDeps, config: RunnableConfig, messages: list[MessageDict], *, dropped: int, turn_start: int
) -> None:
    """Start the next model step on `messages` while guards decide whether the model may see the last one (see
    `speculation.py`); the model node uses it only if its own prompt is exactly this one."""
    slot = speculation_slot(config)
    if slot is None or not deps.performance.speculates(deps.backend):
        return
    try:  # the last message is being judged right now: the model's output is used only if it passes
        window = prompt_window(deps, messages, dropped=dropped, turn_start=turn_start, unsealed_tail=1)
    except (ContextOverflow, Unjudged):
        return
    await slot.start(deps.backend, window.prompt_ids, generation_params(deps))


async def discard_speculation(config: RunnableConfig) -> None:
    slot = speculation_slot(config)
    if slot is not None:
        await slot.discard()


def output_stream(deps: AgentDeps, config: RunnableConfig, messages: list[MessageDict]) -> AnswerStream:
    """How this model call's answer reaches the user: streamed through checks of the answer so far, streamed as is
    when no output guard is enabled, or held for one check of the whole answer (streaming moderation off)."""
    guards = deps.pipeline.enabled_guards("model_output")
    moderation = deps.policy.agent.streaming_moderation

    async def check(text: str) -> Judgement:
        return await judge(deps.pipeline, "completion", text, conversation=guard_context(messages),
                           thread_id=thread_of(config))  # fmt: skip

    def on_judgement(judgement: Judgement) -> None:
        for result in judgement.results:
            emit_verdicts(result)

    return AnswerStream(
        check, emit, on_judgement, moderated=bool(guards), streaming=moderation.enabled,
        code_shield="code_shield" in guards, chunk_chars=moderation.chunk_chars,
        first_chunk_chars=moderation.first_chunk_chars,
    )  # fmt: skip


def make_model(deps: AgentDeps):
    async def model(state: AgentState, config: RunnableConfig) -> Command:
        turn = dict(state["turn"])
        messages = list(state["messages"])
        thread_id = thread_of(config)
        if turn["steps"] >= deps.policy.agent.max_steps:
            limit = deps.policy.agent.max_steps
            message = f"I stopped: this turn reached the policy's step limit ({limit})."
            return refuse(deps, state, "agent", message=message, thread_id=thread_id)
        turn["steps"] += 1
        dropped = state.get("dropped", 0)
        try:
            window = prompt_window(deps, messages, dropped=dropped, turn_start=turn["start"])
        except ContextOverflow as exc:
            return fail(deps, state, "bad_input", str(exc), thread_id)
        except Unjudged as exc:
            return refuse_unjudged(deps, {**state, "turn": turn}, exc, thread_id)
        if window.newly_dropped:
            emit(Notice(kind="context_trimmed", message=f"The {window.newly_dropped} oldest messages no longer fit the "
                        "model's context window and were left out of the prompt."))  # fmt: skip
        params = generation_params(deps)
        slot = speculation_slot(config)
        generation = await slot.take(window.prompt_ids, params) if slot is not None else None
        if generation is None:  # nothing ran ahead for exactly this prompt
            generation = Generation(deps.backend, window.prompt_ids, params)
        stream = output_stream(deps, config, messages)
        try:  # text is shown only after the check covering it passed; bounded by models.main.timeout_s
            completion = await stream.consume(generation, deps.policy.models.main.timeout_s)
        except AnswerBlocked as blocked:  # a streamed check failed: generation stopped, nothing after it shown
            return refuse(deps, {**state, "turn": turn}, "model_output", blocked.judgement, thread_id=thread_id)
        except Exception as exc:  # a backend failure of any kind ends the turn as a model error
            return fail(deps, {**state, "turn": turn}, "model_backend", f"{type(exc).__name__}: {exc}", thread_id)
        if completion.dropped:  # nothing after the first stop token is stored, shown or sent (12.10)
            emit(Notice(kind="text_after_stop", message="The model produced text after its end-of-turn token; it was "
                        "discarded unread."))  # fmt: skip
        parsed = completion.parse(builtin_tools=deps.builtin_names, tools=deps.custom_names)
        stored = {"raw": completion.raw, "stop_reason": completion.stop_reason,
                  "special_spans": [list(span) for span in completion.raw_spans]}  # fmt: skip
        update: dict[str, Any] = {"dropped": window.start}
        if not parsed.tool_calls and parsed.error is None:
            return await finish_answer(deps, state, config, stream, turn, messages, update, parsed.content or "",
                                       stored)  # fmt: skip
        await stream.abandon()  # it was not an answer after all: no more of it is shown
        # A tool call (or what failed to parse as one) is model output too: the whole raw completion passes the
        # completion path before any of it is stored, shown or run.
        judgement = await judged(deps, config, "completion", completion.raw, messages)
        if not judgement.passed:
            return refuse(deps, {**state, "turn": turn}, "model_output", judgement, thread_id=thread_id)
        if parsed.error is not None:
            messages.append(seal({"role": "assistant", "content": completion.raw, **stored}, judgement))
            messages.append(seal_trusted({"role": "tool", "content": "Error: the tool call could not be parsed: "
                                          f"{parsed.error}", "notice": True}, "agent"))  # fmt: skip
            ended = after_failure(deps, state, turn, update, f"unparseable tool call: {parsed.error}", thread_id)
            return ended or Command(update={**update, "messages": messages, "turn": turn}, goto=MODEL)
        limit = deps.policy.tools.max_calls_per_turn
        if turn.get("calls", 0) + len(parsed.tool_calls) > limit:  # the one place calls per turn are counted
            return fail(deps, {**state, "turn": turn}, "tool", f"the model proposed {len(parsed.tool_calls)} tool "
                        f"calls after {turn.get('calls', 0)} in this turn; the policy allows {limit} per turn "
                        "(tools.max_calls_per_turn)", thread_id)  # fmt: skip
        turn["calls"] = turn.get("calls", 0) + len(parsed.tool_calls)
        # ids unique across threads, replicas and restarts: a client or an approval names exactly one call
        calls = [
            {"name": call.name, "arguments": dict(call.arguments), "call_id": call.call_id or new_call_id()}
            for call in parsed.tool_calls
        ]  # fmt: skip
        messages.append(seal({"role": "assistant", "content": parsed.content or "", "tool_calls": calls, **stored},
                             judgement))  # fmt: skip
        turn["pending"] = [{**c, "status": "proposed"} for c in calls]
        return Command(update={**update, "messages": messages, "turn": turn}, goto=REVIEW)

    return model


def new_call_id() -> str:
    return f"call-{uuid.uuid4().hex[:24]}"


async def finish_answer(
    deps: AgentDeps, state: AgentState, config: RunnableConfig, stream: AnswerStream, turn: dict[str, Any],
    messages: list[MessageDict], update: dict[str, Any], answer: str, stored: dict[str, Any],
) -> Command:  # fmt: skip
    """The whole answer judged (inside the model node: an answer that fails is never checkpointed, emitted or
    stored), the rest of it released, then stored with its raw text."""
    try:
        judgement = await stream.finish(answer)
    except AnswerBlocked as blocked:
        return refuse(deps, {**state, "turn": turn}, "model_output", blocked.judgement, thread_id=thread_of(config))
    if stored["raw"] != answer:  # the model reads `raw` again next turn: those exact bytes are judged too
        judgement = await judged(deps, config, "completion", stored["raw"], messages)
        if not judgement.passed:
            return refuse(deps, {**state, "turn": turn}, "model_output", judgement, thread_id=thread_of(config))
    emit(Final(text=answer))
    messages.append(seal({"role": "assistant", "content": answer, **stored}, judgement))
    turn["outcome"] = "final"
    return Command(update={**update, "messages": messages, "turn": turn}, goto=END)
