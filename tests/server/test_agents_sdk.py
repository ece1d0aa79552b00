"""The OpenAI Agents SDK against a real `assistant serve` (tiny trained guards, the keyed scripted model): a typed
`output_type` answer, a forced tool call (`tool_choice="required"`) whose client tool the SDK runs, and a guard's
refusal surfacing as the SDK's own `ModelRefusalError` - the signal the issue asks a refusal to give."""

from __future__ import annotations

import openai
import pydantic
import pytest
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from agents.exceptions import ModelRefusalError

from tests.server.conftest import KEY_A, ServerProcess

set_tracing_disabled(True)  # the SDK would export its own traces to OpenAI's platform


class Answer(pydantic.BaseModel):
    text: str


def model(server: ServerProcess) -> OpenAIChatCompletionsModel:
    client = openai.AsyncOpenAI(base_url=server.base + "/v1", api_key=KEY_A, max_retries=0, timeout=60)
    return OpenAIChatCompletionsModel(model="guarded-assistant", openai_client=client)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "temp=21"  # the scripted model answers a tool result `temp=N` with "It is N degrees."


async def test_output_type_is_answered_as_json_of_its_schema(guarded_server: ServerProcess) -> None:
    agent = Agent(name="typed", instructions="", model=model(guarded_server), output_type=Answer)
    result = await Runner.run(agent, "structured agents")
    assert result.final_output == Answer(text="agents")


async def test_tool_choice_required_forces_the_call_the_sdk_then_runs(guarded_server: ServerProcess) -> None:
    agent = Agent(name="forced", instructions="", model=model(guarded_server), tools=[get_weather],
                  model_settings=ModelSettings(tool_choice="required"))
    result = await Runner.run(agent, "forced Oslo")
    calls = [item.raw_item for item in result.new_items if item.type == "tool_call_item"]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Oslo"}')]  # type: ignore[union-attr]
    assert result.final_output == "It is 21 degrees."


async def test_a_guard_refusal_raises_the_sdks_refusal_error(guarded_server: ServerProcess) -> None:
    agent = Agent(name="refused", instructions="", model=model(guarded_server), output_type=Answer)
    with pytest.raises(ModelRefusalError) as refused:
        await Runner.run(agent, "structured refused")  # the answer trips the tiny Llama Guard at model_output
    assert "zyxtrigger" not in str(refused.value)
