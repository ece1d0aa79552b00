"""OpenAI's shapes the SDKs rely on: refusals in `message.refusal` / `delta.refusal`, `usage` counted by us, the
request's generation settings honoured (or a 400 naming the field), empty system messages accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from assistant.server.errors import ApiError
from assistant.server.openai_compat import ClientMessage, parse_chat_request
from assistant.server.sampling import RequestBackend, Sampling, StopCutter, Usage, counter, parse_sampling
from model.backends.base import BackendDefaults, BackendStats, GenerationParams
from model.completion import SpecialToken
from model.tokenizer import get_tokenizer
from tests.server.conftest import ServerProcess
from tests.server.test_openai_sdk import client, guard

TOKENIZER = get_tokenizer(None)


def tokens(text: str) -> int:
    return len(TOKENIZER.encode(text))


# --- units ------------------------------------------------------------------------------------------------------


def test_sampling_fields_are_parsed_or_named_in_a_400() -> None:
    s = parse_sampling({"max_tokens": 50, "max_completion_tokens": 40, "temperature": 0.7, "top_p": 0.5, "seed": 3,
                        "stop": "END", "presence_penalty": 0, "logprobs": False}, max_new_tokens=100)
    assert s == Sampling(40, 0.7, 0.5, 3, ("END",))
    params = s.apply(GenerationParams(max_new_tokens=100))
    assert (params.max_new_tokens, params.temperature, params.top_p, params.seed) == (40, 0.7, 0.5, 3)
    assert Sampling().apply(GenerationParams()) == GenerationParams()  # nothing asked: the policy's settings
    for body, param in (({"max_tokens": 101}, "max_tokens"), ({"max_completion_tokens": 0}, "max_completion_tokens"),
                        ({"temperature": 3}, "temperature"), ({"top_p": 0}, "top_p"), ({"seed": 1.5}, "seed"),
                        ({"stop": ["a", ""]}, "stop"), ({"stop": list("abcde")}, "stop"),
                        ({"logprobs": True}, "logprobs"), ({"frequency_penalty": 0.5}, "frequency_penalty"),
                        ({"logit_bias": {"1": 2}}, "logit_bias")):
        with pytest.raises(ApiError) as info:
            parse_sampling(body, max_new_tokens=100)
        assert info.value.status == 400 and info.value.param == param, body


def test_stop_cutter_holds_back_only_a_possible_stop() -> None:
    cutter = StopCutter(("STOP", "##"))
    out = [*cutter.push("hello S"), *cutter.push("TO"), *cutter.push("P and more")]
    assert out == ["hello ", SpecialToken("<|eot_id|>")] and cutter.stopped
    cutter = StopCutter(("##",))
    assert cutter.push("a#") == ["a"] and cutter.push("b") == ["#b"]
    assert cutter.push(SpecialToken("<|eot_id|>")) == [SpecialToken("<|eot_id|>")]


class Recording(BackendDefaults):
    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas
        self.context_window = 8192
        self.stats = BackendStats()
        self.params: list[GenerationParams] = []

    async def stream(self, prompt_ids: list[int], params: GenerationParams) -> AsyncIterator[str]:
        self.params.append(params)
        for delta in self.deltas:
            yield delta


async def test_request_backend_applies_settings_cuts_at_stop_and_counts_tokens() -> None:
    inner = Recording(["Hello the", "re, wor", "ld END ignored", SpecialToken("<|eot_id|>")])
    usage = Usage()
    backend = RequestBackend(inner, Sampling(max_new_tokens=7, temperature=1.0, seed=5, stop=("END",)), usage,
                             counter(TOKENIZER))
    out = [d async for d in backend.stream([1, 2, 3, 4], GenerationParams(max_new_tokens=100))]
    assert "".join(out) == "Hello there, world <|eot_id|>" and isinstance(out[-1], SpecialToken)
    assert inner.params == [GenerationParams(max_new_tokens=7, temperature=1.0, seed=5)]
    assert usage.body() == {"prompt_tokens": 4, "completion_tokens": tokens("Hello there, world ") + 1,
                            "total_tokens": 4 + tokens("Hello there, world ") + 1}
    assert not usage.last_hit_limit
    cut = RequestBackend(Recording(["no stop token"]), Sampling(), usage, counter(TOKENIZER))
    assert [d async for d in cut.stream([1], GenerationParams())] == ["no stop token"]
    assert usage.calls == 2 and usage.prompt_tokens == 5 and usage.last_hit_limit  # max_tokens ended it: "length"


def test_accepted_shapes_and_the_continuation() -> None:
    turn = parse_chat_request({"messages": [{"role": "system", "content": ""}, {"role": "developer", "content": []},
                                            {"role": "user", "content": "hi"}]}, max_messages=5, default_model="m")
    assert turn.user_text == "hi" and turn.history == ()  # an empty system message says nothing: left out
    sent_back = parse_chat_request({"messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": None, "refusal": "I can't."},
        {"role": "user", "content": "b"}]}, max_messages=5, default_model="m")
    assert sent_back.history[1] == ClientMessage("assistant", "I can't.")  # the refusal as the server sent it
    cont = parse_chat_request({"messages": [{"role": "user", "content": "a"},
                                            {"role": "assistant", "content": "Once"}]}, max_messages=5,
                              default_model="m")
    assert cont.continuation == "Once" and cont.user_text is None and cont.history[-1].content == "Once"
    with pytest.raises(ApiError) as info:  # nothing to continue
        parse_chat_request({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]},
                           max_messages=5, default_model="m")
    assert info.value.param == "messages"


# --- against a real server -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_answer_is_a_refusal_the_sdk_sees(guarded_server: ServerProcess, stream: bool) -> None:
    c = client(guarded_server)
    messages = [{"role": "user", "content": "please say bad"}]
    if stream:
        chunks = list(c.chat.completions.create(model="m", messages=messages, stream=True))
        refusal = "".join(ch.choices[0].delta.refusal or "" for ch in chunks if ch.choices)
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == ""
        assert chunks[-1].choices[0].finish_reason == "content_filter"
    else:
        r = c.chat.completions.create(model="m", messages=messages)
        assert r.choices[0].message.content is None and r.choices[0].finish_reason == "content_filter"
        refusal = r.choices[0].message.refusal or ""
        assert guard(r)["refusal"] == {"stage": "model_output", "guard_error": False}
    assert refusal and "zyxtrigger" not in refusal
    # .parse() with a refused JSON answer: tests/server/test_structured_output.py


def test_a_refusal_after_streamed_text_keeps_the_text_and_adds_the_refusal(guarded_server: ServerProcess) -> None:
    c = client(guarded_server)
    chunks = list(c.chat.completions.create(model="m", stream=True,
                                            messages=[{"role": "user", "content": "now answer partly bad"}]))
    content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    refusal = "".join(ch.choices[0].delta.refusal or "" for ch in chunks if ch.choices)
    assert content.startswith("Safe words here.") and "zyxtrigger" not in content  # sent: it passed its checks
    assert refusal and "zyxtrigger" not in refusal and chunks[-1].choices[0].finish_reason == "content_filter"
    assert chunks[-1].model_extra["guard"]["refusal"]["stage"] == "model_output"


def test_usage_is_the_main_models_tokens(guarded_server: ServerProcess) -> None:
    c = client(guarded_server)
    short = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "client 21 turn 1"}])
    answer = "Answer for client 21 turn 1."
    assert short.choices[0].message.content == answer
    u = short.usage
    assert u is not None and u.completion_tokens == tokens(answer) + 1  # + <|eot_id|>
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    longer_text = "client 21 turn 1 with several more words of text"
    longer = c.chat.completions.create(model="m", messages=[{"role": "user", "content": longer_text}])
    assert longer.usage is not None  # the same prompt but for the user's text, whose tokens are counted exactly
    assert longer.usage.prompt_tokens - u.prompt_tokens == tokens(longer_text) - tokens("client 21 turn 1")
    chunks = list(c.chat.completions.create(model="m", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "client 21 turn 1"}]))
    assert chunks[-1].choices == [] and chunks[-1].usage == u
    assert all(ch.usage is None for ch in chunks[:-1])
    plain = list(c.chat.completions.create(model="m", stream=True,
                                           messages=[{"role": "user", "content": "client 21 turn 2"}]))
    assert all(ch.usage is None for ch in plain)  # only when asked for
    refused = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "tell me zyxtrigger"}])
    assert refused.usage is not None and refused.usage.total_tokens >= 0  # present on refusals too


def test_the_guard_object_counts_the_guards_own_tokens(guarded_server: ServerProcess) -> None:
    c = client(guarded_server)
    short, longer = (c.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
                     for text in ("client 22 turn 1", "client 22 turn 1 " + "and many more words " * 20))
    counts, more = guard(short)["tokens"], guard(longer)["tokens"]
    assert counts["llama_guard"] > 0 and counts["prompt_guard"] > 0  # input and output checks, beside `usage`
    assert counts["total"] == counts["llama_guard"] + counts["prompt_guard"]
    per_verdict = [v["tokens"] for v in guard(short)["verdicts"] if v["guard"] == "llama_guard"]
    assert sum(per_verdict) == counts["llama_guard"] and all(n > 0 for n in per_verdict)
    assert more["prompt_guard"] - counts["prompt_guard"] >= 60  # the user's longer text, read by Prompt Guard


def test_request_settings_are_honoured_or_named(guarded_server: ServerProcess) -> None:
    c = client(guarded_server)
    r = c.chat.completions.create(model="m", messages=[{"role": "system", "content": ""},
                                                       {"role": "user", "content": "client 22 turn 1"}],
                                  temperature=0.5, top_p=0.9, seed=7, max_tokens=64, stop=[" turn"])
    assert r.choices[0].message.content == "Answer for client 22" and r.choices[0].finish_reason == "stop"
    chunks = list(c.chat.completions.create(model="m", stream=True, stop="client",
                                            messages=[{"role": "user", "content": "client 22 turn 2"}]))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Answer for "
    for kwargs, param in (({"max_tokens": 10**6}, "max_tokens"), ({"logprobs": True}, "logprobs"),
                          ({"top_p": 0}, "top_p")):
        with pytest.raises(openai.BadRequestError) as bad:
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], **kwargs)
        assert bad.value.param == param
    # a continuation (a trailing assistant message): tests/server/test_structured_output.py
