"""The graph's nodes. Each reads the state, emits events through LangGraph's stream writer, and routes with Command.

Invariants: blocked text is never emitted, never stored in `messages` (what the model sees) and never given to a
tool; every guard error ends the turn as a guard-error refusal (fail closed); an answer is released to the user only
after the output guard passed (see `release.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END
from langgraph.types import Command

from assistant.agent.answer_stream import AnswerBlocked, AnswerStream, answer_text
from assistant.agent.deps import AgentDeps
from assistant.agent.release import release_answer
from assistant.agent.speculation import Generation, speculation_slot
from assistant.agent.state import AgentState, MessageDict, TurnState, message_from_dict
from assistant.agent.window import ContextOverflow, fit_window
from assistant.events import Error, Event, Final, GuardVerdict, Notice, Refusal

# Node names.
INPUT_GUARD = "input_guard"
MODEL = "model"
REVIEW = "review_calls"
APPROVAL = "approval"
EXECUTE = "execute"

STOP_TOKENS = {"<|eot_id|>": "end_of_turn", "<|eom_id|>": "end_of_message", "<|end_of_text|>": "end_of_turn"}
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


def stops_turn(result: Any) -> bool:
    """Outside tool stages there is nobody to ask, so `ask` blocks (fail closed); a guard error always blocks."""
    return result.decision in ("block", "ask") or (result.error is not None and result.decision != "allow")


def refuse(deps: AgentDeps, state: AgentState, stage: str, result: Any | None = None, message: str = "") -> Command:
    """End the turn with the policy's refusal; roll the turn back to its user message plus the refusal, so nothing
    the turn produced after the user's (passed) message stays in what the model sees."""
    guard_error = result is not None and result.error is not None
    refusals = deps.policy.refusals
    text = message or (refusals.guard_error if guard_error else refusals.for_stage(stage))
    emit(Refusal(stage=stage, message=text, guard_error=guard_error))
    turn = state.get("turn") or {}
    messages = list(state.get("messages") or [])
    if "start" in turn:
        messages = [*messages[: turn["start"] + 1], {"role": "assistant", "content": text}]
    return Command(update={"messages": messages, "turn": {**turn, "outcome": "refusal", "pending": []}}, goto=END)


def fail(state: AgentState, kind: str, message: str) -> Command:
    emit(Error(kind=kind, message=message))
    turn = state.get("turn") or {}
    return Command(update={"turn": {**turn, "outcome": "error", "pending": []}}, goto=END)


def guard_context(messages: list[MessageDict], upto: int) -> tuple[tuple[str, str], ...]:
    """Earlier plain user/assistant messages (no tool traffic), as (role, text) pairs, for Llama Guard's context."""
    pairs = [
        (m["role"], m["content"])
        for m in messages[:upto]
        if m["role"] in ("user", "assistant") and not m.get("tool_calls") and m.get("content")
    ]
    return tuple(pairs[-CONTEXT_MESSAGES:])


# --- input guard ----------------------------------------------------------------------------------------------


def make_input_guard(deps: AgentDeps):
    async def input_guard(state: AgentState, config: RunnableConfig) -> Command:
        text = incoming_text(config)
        messages = list(state.get("messages") or [])
        # The model starts on the message while the guards read it; its output is used only if they pass.
        await speculate(deps, config, [*messages, {"role": "user", "content": text}], dropped=state.get("dropped", 0),
                        turn_start=len(messages))  # fmt: skip
        result = await deps.pipeline.check(
            "user_input", text, role="user", conversation=guard_context(messages, len(messages)),
            thread_id=thread_of(config),
        )
        emit_verdicts(result)
        if stops_turn(result):
            await discard_speculation(config)
            return refuse(deps, {"messages": messages, "turn": {}}, "user_input", result)
        turn: TurnState = {
            "start": len(messages), "steps": 0, "tool_failures": 0, "calls": 0, "untrusted": False,
            "pending": [], "executed": [], "outcome": "",
        }  # fmt: skip
        messages.append({"role": "user", "content": text})
        return Command(update={"messages": messages, "turn": turn}, goto=MODEL)

    return input_guard


# --- model ------------------------------------------------------------------------------------------------------


def generation_params(deps: AgentDeps) -> Any:
    from model.backends.base import GenerationParams

    main = deps.policy.models.main
    return GenerationParams(max_new_tokens=main.max_new_tokens, temperature=main.temperature, top_p=main.top_p)


def prompt_window(deps: AgentDeps, messages: list[MessageDict], *, dropped: int, turn_start: int) -> Any:
    return fit_window(
        messages, lambda ms: deps.encode([message_from_dict(m) for m in ms]), budget=deps.prompt_budget,
        already_dropped=dropped, current_turn_start=turn_start,
    )  # fmt: skip


async def speculate(
    deps: AgentDeps, config: RunnableConfig, messages: list[MessageDict], *, dropped: int, turn_start: int
) -> None:
    """Start the next model step on `messages` while guards decide whether the model may see the last one (see
    `speculation.py`); the model node uses it only if its own prompt is exactly this one."""
    slot = speculation_slot(config)
    if slot is None or not deps.performance.speculates(deps.backend):
        return
    try:
        window = prompt_window(deps, messages, dropped=dropped, turn_start=turn_start)
    except ContextOverflow:
        return
    await slot.start(deps.backend, window.prompt_ids, generation_params(deps))


async def discard_speculation(config: RunnableConfig) -> None:
    slot = speculation_slot(config)
    if slot is not None:
        await slot.discard()


def output_stream(deps: AgentDeps, config: RunnableConfig, messages: list[MessageDict]) -> AnswerStream:
    """How this model call's answer reaches the user: streamed through chunked output checks, streamed as is when
    no output guard is enabled, or held for one check of the whole answer (streaming moderation off)."""
    guards = deps.pipeline.enabled_guards("model_output")
    context = guard_context(messages, len(messages))
    moderation = deps.policy.agent.streaming_moderation

    async def check(text: str) -> Any:
        return await deps.pipeline.check(
            "model_output", text, role="assistant", conversation=context, thread_id=thread_of(config)
        )

    return AnswerStream(
        check, emit, emit_verdicts, stops_turn, moderated=bool(guards), streaming=moderation.enabled,
        code_shield="code_shield" in guards, chunk_chars=moderation.chunk_chars,
        lookback_chars=moderation.lookback_chars,
    )  # fmt: skip


def split_stop(text: str) -> tuple[str, str | None]:
    """The completion without its final stop token, and the stop reason that token gives."""
    for token, reason in STOP_TOKENS.items():
        if text.endswith(token):
            return text[: -len(token)], reason
    return text, None


def make_model(deps: AgentDeps):
    async def model(state: AgentState, config: RunnableConfig) -> Command:
        from model.tool_parser import parse_completion

        turn = dict(state["turn"])
        messages = list(state["messages"])
        if turn["steps"] >= deps.policy.agent.max_steps:
            limit = deps.policy.agent.max_steps
            message = f"I stopped: this turn reached the policy's step limit ({limit})."
            return refuse(deps, state, "agent", message=message)
        turn["steps"] += 1
        dropped = state.get("dropped", 0)
        try:
            window = prompt_window(deps, messages, dropped=dropped, turn_start=turn["start"])
        except ContextOverflow as exc:
            return fail(state, "bad_input", str(exc))
        if window.newly_dropped:
            emit(Notice(kind="context_trimmed", message=f"The {window.newly_dropped} oldest messages no longer fit the "
                        "model's context window and were left out of the prompt."))  # fmt: skip
        params = generation_params(deps)
        slot = speculation_slot(config)
        generation = await slot.take(window.prompt_ids, params) if slot is not None else None
        if generation is None:  # nothing ran ahead for exactly this prompt
            generation = Generation(deps.backend, window.prompt_ids, params)
        stream = output_stream(deps, config, messages)
        try:  # text is shown only after the output check covering it passed; bounded by models.main.timeout_s
            completion = await stream.consume(generation, deps.policy.models.main.timeout_s)
        except AnswerBlocked as blocked:  # a streamed chunk failed: generation stopped, nothing after it shown
            return refuse(deps, {**state, "turn": turn}, "model_output", blocked.result)
        except Exception as exc:  # a backend failure of any kind ends the turn as a model error
            return fail({**state, "turn": turn}, "model_backend", f"{type(exc).__name__}: {exc}")
        raw, stop_reason = split_stop(completion)
        parsed = parse_completion(completion, builtin_tools=deps.builtin_names, tools=deps.custom_names)
        update: dict[str, Any] = {"dropped": window.start}
        if parsed.tool_calls or parsed.error is not None:
            await stream.abandon()  # it was not an answer after all: no more of it is shown
        elif stream.streaming:
            return await finish_streamed(deps, state, stream, turn, messages, update, answer_text(completion), raw,
                                         stop_reason)  # fmt: skip
        if parsed.error is not None:
            messages.append({"role": "assistant", "content": raw, "raw": raw, "stop_reason": stop_reason})
            messages.append({"role": "tool", "content": f"Error: the tool call could not be parsed: {parsed.error}"})
            return tool_failure(deps, state, turn, messages, update, f"unparseable tool call: {parsed.error}")
        if len(parsed.tool_calls) > deps.policy.tools.max_calls_per_turn:  # runaway output: one bounded outcome
            return fail({**state, "turn": turn}, "tool", f"the model proposed {len(parsed.tool_calls)} tool calls "
                        f"in one message; the policy allows {deps.policy.tools.max_calls_per_turn} per turn "
                        "(tools.max_calls_per_turn)")  # fmt: skip
        if parsed.tool_calls:
            calls = []
            for i, call in enumerate(parsed.tool_calls):
                call_id = call.call_id or f"call-{turn['start']}-{turn['steps']}-{i}"
                calls.append({"name": call.name, "arguments": dict(call.arguments), "call_id": call_id})
            messages.append({
                "role": "assistant", "content": parsed.content or "", "tool_calls": calls, "raw": raw,
                "stop_reason": stop_reason,
            })  # fmt: skip
            turn["pending"] = [{**c, "status": "proposed"} for c in calls]
            return Command(update={**update, "messages": messages, "turn": turn}, goto=REVIEW)
        return await guard_answer(
            deps, state, config, turn, messages, update, parsed.content or "", raw, stop_reason
        )

    return model


def tool_failure(
    deps: AgentDeps, state: AgentState, turn: dict[str, Any], messages: list[MessageDict], update: dict[str, Any],
    what: str,
) -> Command:  # fmt: skip
    """A parse error or tool error went back to the model; past the retry limit the turn ends with an error."""
    turn["tool_failures"] = turn.get("tool_failures", 0) + 1
    if turn["tool_failures"] > deps.policy.agent.max_tool_retries:
        message = f"gave up after {turn['tool_failures']} failed tool calls ({what})"
        return fail({**state, "turn": turn}, "tool", message)
    return Command(update={**update, "messages": messages, "turn": turn}, goto=MODEL)


# --- output guard -------------------------------------------------------------------------------------------------


async def finish_streamed(
    deps: AgentDeps, state: AgentState, stream: AnswerStream, turn: dict[str, Any], messages: list[MessageDict],
    update: dict[str, Any], answer: str, raw: str, stop_reason: str | None,
) -> Command:  # fmt: skip
    """The rest of a streamed answer: its last chunks checked and shown, then stored like a held answer."""
    try:
        await stream.finish(answer)
    except AnswerBlocked as blocked:
        return refuse(deps, {**state, "turn": turn}, "model_output", blocked.result)
    emit(Final(text=answer))
    messages.append({"role": "assistant", "content": answer, "raw": raw, "stop_reason": stop_reason})
    turn["outcome"] = "final"
    return Command(update={**update, "messages": messages, "turn": turn}, goto=END)


async def guard_answer(
    deps: AgentDeps, state: AgentState, config: RunnableConfig, turn: dict[str, Any], messages: list[MessageDict],
    update: dict[str, Any], answer: str, raw: str, stop_reason: str | None,
) -> Command:  # fmt: skip
    """The `model_output` stage on the held answer, inside the model node: an answer that fails it is never
    checkpointed, emitted or stored; one that passes is released, then stored with its raw text."""
    context = guard_context(messages, len(messages))
    result = await deps.pipeline.check(
        "model_output", answer, role="assistant", conversation=context, thread_id=thread_of(config)
    )
    emit_verdicts(result)
    if stops_turn(result):
        return refuse(deps, {**state, "turn": turn}, "model_output", result)
    release_answer(answer, emit)
    emit(Final(text=answer))
    messages.append({"role": "assistant", "content": answer, "raw": raw, "stop_reason": stop_reason})
    turn["outcome"] = "final"
    return Command(update={**update, "messages": messages, "turn": turn}, goto=END)
