"""Function tools, structured outputs and conversation state through a real server,
with the official `openai` SDK and the `openai-agents` SDK as clients, on the
built-in fake model (which calls tools and emits schema-valid JSON deterministically).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai.types.responses import Response
from pydantic import BaseModel

from tests.support.grammar import check_frames, check_stream
from tests.support.openresponses import validate_response
from tests.support.server import TetherProcess

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": WEATHER_SCHEMA,
    "strict": True,
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_time",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
}


def checked(response: Response) -> Response:
    validate_response(response.model_dump(mode="json", exclude_unset=True))
    return response


def calls_of(response: Response) -> list[Any]:
    return [item for item in response.output if item.type == "function_call"]


# --- function tools -------------------------------------------------------------------


def test_required_tool_choice_calls_the_tool_with_valid_arguments(
    client: openai.OpenAI,
) -> None:
    response = checked(
        client.responses.create(
            model="fake",
            input="What's the weather in Paris?",
            tools=[WEATHER_TOOL, TIME_TOOL],
            tool_choice="required",
        )
    )
    assert response.status == "completed"
    (call,) = calls_of(response)
    assert call.name == "get_weather"
    assert call.id is not None and call.id.startswith("fc_")
    assert call.call_id.startswith("call_")
    jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)
    assert response.tools[0].name == "get_weather"  # echoed
    assert response.tool_choice == "required"


def test_named_tool_choice_calls_that_tool(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="fake",
        input="hi",
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "name": "get_time"},
    )
    assert [call.name for call in calls_of(response)] == ["get_time"]


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="fake", input="hi", tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert not calls_of(response)
    assert response.output_text


def test_streamed_tool_call_follows_the_grammar(server: TetherProcess) -> None:
    body = {
        "model": "fake",
        "input": "weather?",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "stream": True,
    }
    with httpx.stream("POST", f"{server.base_url}/responses", json=body, timeout=30) as reply:
        raw = reply.read()
    events = check_frames(raw)
    check_stream(events)
    types = [e["type"] for e in events]
    assert types.count("response.function_call_arguments.delta") >= 2
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["type"] == "function_call" and added["item"]["arguments"] == ""


def test_tool_loop_by_hand_with_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="fake", input="Weather in Paris?", tools=[WEATHER_TOOL], instructions="Be brief."
    )
    (call,) = calls_of(first)
    second = checked(
        client.responses.create(
            model="fake",
            previous_response_id=first.id,
            input=[
                {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21C"}
            ],
            tools=[WEATHER_TOOL],
        )
    )
    assert second.status == "completed"
    assert not calls_of(second) and second.output_text
    assert second.previous_response_id == first.id
    assert second.instructions is None  # not inherited
    third = client.responses.create(
        model="fake", previous_response_id=second.id, input="And tomorrow?", tools=[WEATHER_TOOL]
    )
    assert calls_of(third)  # a new user message: the fake calls the tool again
    items = list(client.responses.input_items.list(third.id, order="asc"))
    kinds = [(item.type, getattr(item, "role", None)) for item in items]
    assert kinds == [
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items[1].id == call.id  # the previous output, as it was


def test_tool_output_that_answers_no_call_is_a_400(client: openai.OpenAI) -> None:
    first = client.responses.create(model="fake", input="Weather in Paris?", tools=[WEATHER_TOOL])
    (call,) = calls_of(first)
    orphan = {"type": "function_call_output", "call_id": "call_other", "output": "Sunny"}
    for chained in ({"previous_response_id": first.id}, {}):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="fake", input=[orphan], **chained)  # type: ignore[arg-type]
        error = caught.value.body
        assert isinstance(error, dict)
        assert error["param"] == "input"
        assert error["message"].startswith(
            "No tool call found for function call output with call_id call_other."
        )
    # The call and its output in one input (no previous response) are fine.
    answered = client.responses.create(
        model="fake",
        input=[
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
        ],
    )
    assert answered.status == "completed"


def test_previous_response_id_that_does_not_exist_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake", input="x", previous_response_id="resp_nope")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id"


def test_previous_response_and_conversation_together_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="fake", input="x", previous_response_id="resp_1", conversation="conv_1"
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "conversation"


# --- structured outputs ---------------------------------------------------------------


class City(BaseModel):
    name: str
    population: int
    landmarks: list[str]
    capital: bool | None


def test_responses_parse_returns_the_parsed_object(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(
        model="fake", input="Describe a city as JSON.", text_format=City
    )
    assert parsed.status == "completed"
    assert isinstance(parsed.output_parsed, City)
    assert parsed.text is not None and parsed.text.format is not None
    assert parsed.text.format.type == "json_schema"


def test_json_object_needs_the_word_json(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake", input="hi", text={"format": {"type": "json_object"}})
    assert "must contain the word 'json'" in caught.value.message
    ok = client.responses.create(
        model="fake", input="answer in JSON", text={"format": {"type": "json_object"}}
    )
    assert isinstance(json.loads(ok.output_text), dict)


def test_input_tokens_counts_the_whole_context(client: openai.OpenAI) -> None:
    short = client.responses.input_tokens.count(model="fake", input="hello")
    longer = client.responses.input_tokens.count(model="fake", input="hello " * 200)
    assert 0 < short.input_tokens < longer.input_tokens
    assert short.object == "response.input_tokens"


# --- the openai-agents SDK --------------------------------------------------------------


def _agent(server: TetherProcess) -> Any:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    model = agents.OpenAIResponsesModel(model="fake", openai_client=client)
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}"

    agent = agents.Agent(name="weather", instructions="Answer.", tools=[get_weather], model=model)
    agent.calls = calls  # type: ignore[attr-defined]
    return agent


async def test_agents_sdk_runs_a_multi_turn_tool_loop(server: TetherProcess) -> None:
    from agents import Runner

    agent = _agent(server)
    first = await Runner.run(agent, "What's the weather in Paris?")
    assert agent.calls and isinstance(first.final_output, str) and first.final_output
    follow_up = [*first.to_input_list(), {"role": "user", "content": "And in Rome?"}]
    second = await Runner.run(agent, follow_up)
    assert len(agent.calls) == 2
    assert second.final_output


async def test_agents_sdk_streams_a_tool_loop(server: TetherProcess) -> None:
    from agents import Runner

    agent = _agent(server)
    result = Runner.run_streamed(agent, "Weather in Oslo?")
    kinds = [event.type async for event in result.stream_events()]
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert agent.calls and result.final_output


async def test_agents_sdk_with_server_side_state(server: TetherProcess) -> None:
    from agents import Runner

    agent = _agent(server)
    first = await Runner.run(agent, "Weather in Lima?", auto_previous_response_id=True)
    assert agent.calls and first.final_output
    second = await Runner.run(agent, "And in Quito?", previous_response_id=first.last_response_id)
    assert len(agent.calls) == 2 and second.final_output
