"""Constrained decoding (structured output, forced tool calls) on each backend kind: the tiny random-weight model
decoded under xgrammar's mask, vLLM's own structured output (the request body it gets, played by an in-process
handler speaking vLLM's stream format), a text-only server refused, the scripted models checked."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import pytest

from model.backends import BackendError, GenerationParams, load_backend
from model.backends.openai_backend import OpenAIBackend
from model.backends.scripted import ScriptedBackend
from model.completion import Completion, CompletionBuilder
from model.constraint import json_constraint, matches, tool_call_constraint
from model.tokenizer import get_tokenizer
from tests.model.test_backend_openai import prompt
from tests.model.test_backend_openai_marking import backend_for, id_chunks, sse

WEATHER = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}, "days": {"type": "integer",
           "minimum": 1, "maximum": 9}}, "required": ["city", "days"], "additionalProperties": False}
ANSWER = {"type": "object", "properties": {"ok": {"type": "boolean"}, "kind": {"enum": ["a", "b"]},
          "note": {"type": "string", "maxLength": 6}}, "required": ["ok", "kind", "note"],
          "additionalProperties": False}


def test_constraints_as_data_and_their_matching() -> None:
    answer = json_constraint(ANSWER)
    assert answer.json_schema() == ANSWER and json_constraint(None).json_schema() == {"type": "object"}
    assert matches(answer, '{"ok": true, "kind": "a", "note": "hi"}')
    assert not matches(answer, '{"ok": true, "kind": "c", "note": "hi"}')  # not in the enum
    assert not matches(answer, '{"ok": true, "kind": "a", "note": "hi"} and more')  # text after the JSON
    assert not matches(json_constraint(None), "[1, 2]")  # json_object: an object
    tag = tool_call_constraint([("get_weather", WEATHER)], "function_tag")
    assert tag.json_schema() is None  # literal text around the JSON: no single schema for a server
    assert matches(tag, '<function=get_weather>{"city": "Rome", "days": 2}</function>')
    assert not matches(tag, '<function=other>{"city": "Rome", "days": 2}</function>')
    calls = tool_call_constraint([("get_weather", WEATHER), ("noop", {"type": "object"})], "json")
    assert set(json.dumps(s) for s in calls.json_schema()["anyOf"]) and len(calls.json_schema()["anyOf"]) == 2
    assert matches(calls, '{"type": "function", "name": "noop", "parameters": {}}')
    assert not matches(calls, '{"type": "function", "name": "get_weather", "parameters": {"city": "Oslo"}}')
    with pytest.raises(ValueError, match="pythonic"):
        tool_call_constraint([("noop", {})], "pythonic")


async def generate(backend: object, params: GenerationParams) -> Completion:
    builder = CompletionBuilder()
    async for delta in backend.stream(prompt("Answer in JSON."), params):  # type: ignore[attr-defined]
        builder.add(delta)
    return builder.result()


async def test_the_tiny_model_writes_only_what_the_constraint_allows(tiny_llama_dir: Path) -> None:
    backend = load_backend(f"transformers:{tiny_llama_dir}")
    assert backend.constraint_problem(json_constraint(ANSWER)) is None
    for schema, why in (({"$ref": "#/definitions/missing"}, "Cannot find field 'definitions'"),
                        ({"type": "string", "pattern": "(?<=a)b"}, "Lookbehind is not supported")):
        problem = backend.constraint_problem(json_constraint(schema))  # the server's 400 names the field and this
        assert problem is not None and problem.startswith("its grammar cannot be built: ") and why in problem
    free = await generate(backend, GenerationParams(max_new_tokens=24))
    with pytest.raises(json.JSONDecodeError):
        json.loads(free.parse().content or "")  # random weights: noise unless constrained
    answer = await generate(backend, GenerationParams(max_new_tokens=64, constraint=json_constraint(ANSWER)))
    assert answer.stop_reason == "end_of_turn"  # the grammar ends the message once the JSON is complete
    jsonschema.validate(json.loads(answer.parse().content or ""), ANSWER)
    anything = await generate(backend, GenerationParams(max_new_tokens=64, constraint=json_constraint(None)))
    assert isinstance(json.loads(anything.parse().content or ""), dict)
    for tool_format in ("json", "function_tag"):  # a forced call in the prompt's tool format, then the stop token
        constraint = tool_call_constraint([("get_weather", WEATHER)], tool_format)
        call = await generate(backend, GenerationParams(max_new_tokens=64, constraint=constraint))
        calls = call.parse(tools=("get_weather",)).tool_calls
        assert [c.name for c in calls] == ["get_weather"] and calls[0].arguments["city"] in ("Paris", "Rome")
        jsonschema.validate(dict(calls[0].arguments), WEATHER)
    # sampling draws among the allowed tokens only
    sampled = await generate(backend, GenerationParams(max_new_tokens=64, temperature=1.0, seed=3,
                                                       constraint=json_constraint(ANSWER)))
    jsonschema.validate(json.loads(sampled.parse().content or ""), ANSWER)


async def test_vllm_gets_the_constraint_as_its_structured_outputs() -> None:
    tok = get_tokenizer()
    seen: list[dict] = []
    backend = backend_for(id_chunks([*tok.encode('{"ok": true}'), tok.eot_id], tok.decode), seen)
    constraint = json_constraint(ANSWER)
    assert backend.constraint_problem(constraint) is None
    deltas = [d async for d in backend.stream([128000, 9906], GenerationParams(constraint=constraint))]
    assert "".join(deltas) == '{"ok": true}<|eot_id|>'
    assert seen[0]["structured_outputs"] == {"json": ANSWER, "disable_any_whitespace": True}
    [_ async for _ in backend.stream([128000, 9906], GenerationParams())]
    assert "structured_outputs" not in seen[1]  # unconstrained calls stay as they were
    tag = tool_call_constraint([("get_weather", WEATHER)], "function_tag")
    assert "function_tag" in (backend.constraint_problem(tag) or "")


async def test_a_server_that_is_not_vllm_is_refused_constrained_calls() -> None:
    text_only = [{"index": 0, "text": '{"ok": tru', "finish_reason": None},
                 {"index": 0, "text": "e}", "finish_reason": "stop"}]
    backend = backend_for(text_only, [])
    with pytest.raises(BackendError, match="not vLLM"):
        [_ async for _ in backend.stream([128000, 9906], GenerationParams(constraint=json_constraint(ANSWER)))]
    assert "not vLLM" in (backend.constraint_problem(json_constraint(ANSWER)) or "")

    def rejects(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "unexpected field structured_outputs"}})

    refusing = OpenAIBackend("http://vllm.test:8000", model="m")
    refusing._client = httpx.AsyncClient(transport=httpx.MockTransport(rejects))
    with pytest.raises(BackendError, match="structured_outputs"):
        [_ async for _ in refusing.stream([128000, 9906], GenerationParams(constraint=json_constraint(ANSWER)))]
    assert sse([]).endswith(b"[DONE]\n\n")


async def test_a_scripted_completion_must_already_satisfy_the_constraint(tmp_path: Path) -> None:
    script = tmp_path / "model.jsonl"
    script.write_text(json.dumps({"completion": '{"ok": false, "kind": "b", "note": ""}<|eot_id|>'}) + "\n"
                      + json.dumps({"completion": "plain prose<|eot_id|>"}) + "\n", encoding="utf-8")
    backend = ScriptedBackend(script)
    params = GenerationParams(constraint=json_constraint(ANSWER))
    assert backend.constraint_problem(params.constraint) is None  # type: ignore[arg-type]
    assert "".join([d async for d in backend.stream([1], params)]).startswith('{"ok": false')
    with pytest.raises(BackendError, match="does not satisfy the request's response_format"):
        [_ async for _ in backend.stream([1], params)]
