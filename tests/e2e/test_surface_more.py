"""More of the Responses surface through real servers: chat-upstream tools, strict
schemas and logprobs end to end; truncation against a context window; conversations
and previous_response_id chains across a restart of the store."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.support.server import TetherProcess

MakeServer = Callable[..., TetherProcess]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "parameters": SCHEMA,
    "strict": True,
}


def models(mock_chat_url: str) -> str:
    text = """
[[models]]
name = "fake"
provider = "fake"

[[models]]
name = "small-window"
provider = "fake"
mode = "echo"
context_window = 60
"""
    for name, upstream in [
        ("chat-tool", "tool-call"),
        ("chat-parallel", "tool-calls-parallel"),
        ("chat-reasoning", "reasoning-content"),
        ("chat-json-broken", "json-broken"),
        ("chat-words", "words-8"),
    ]:
        text += f"""
[[models]]
name = "{name}"
provider = "chat"
base_url = "{mock_chat_url}"
upstream_model = "{upstream}"
"""
    return text


@pytest.fixture
def server(make_server: MakeServer, mock_chat_url: str) -> TetherProcess:
    return make_server(models(mock_chat_url))


@pytest.fixture
def client(server: TetherProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


# --- chat upstream, end to end -----------------------------------------------------------


def test_chat_upstream_tool_calls_become_function_call_items(client: openai.OpenAI) -> None:
    one = client.responses.create(model="chat-tool", input="weather?", tools=[TOOL])
    calls = [item for item in one.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert calls[0].call_id.startswith("call_")
    two = client.responses.create(model="chat-parallel", input="weather?", tools=[TOOL])
    assert [item.type for item in two.output] == ["function_call", "function_call"]


def test_chat_upstream_reasoning_becomes_a_reasoning_item(client: openai.OpenAI) -> None:
    response = client.responses.create(model="chat-reasoning", input="think")
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output_text


def test_strict_output_that_breaks_the_schema_fails_the_response(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="chat-json-broken",
        input="a city as JSON",
        text={"format": {"type": "json_schema", "name": "city", "schema": SCHEMA, "strict": True}},
    )
    assert response.status == "failed"
    assert response.error is not None
    assert "does not match the JSON schema 'city'" in response.error.message


def test_logprobs_come_through_when_included(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="chat-words",
        input="hi",
        include=["message.output_text.logprobs"],
        top_logprobs=2,
    )
    part = response.output[0].content[0]  # type: ignore[union-attr]
    assert part.type == "output_text"
    assert part.logprobs and len(part.logprobs[0].top_logprobs) == 2


# --- truncation ----------------------------------------------------------------------------


def long_history(turns: int) -> list[dict[str, str]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 20}
        for i in range(turns)
    ] + [{"role": "user", "content": "last question"}]


def test_truncation_disabled_rejects_input_over_the_window(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="small-window", input=long_history(6))  # type: ignore[arg-type]
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "context_length_exceeded"
    assert caught.value.body["param"] == "input"


def test_truncation_auto_drops_the_oldest_items(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="small-window",
        input=long_history(6),  # type: ignore[arg-type]
        truncation="auto",
    )
    assert response.status == "completed"
    assert response.output_text == "last question"
    items = list(client.responses.input_items.list(response.id, order="asc"))
    assert 1 <= len(items) < 7
    assert items[-1].content[0].text == "last question"  # type: ignore[union-attr]
    assert response.truncation == "auto"


# --- state across a restart -------------------------------------------------------------------


def test_conversations_and_chains_survive_a_restart(server: TetherProcess) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    conversation = client.conversations.create(metadata={"topic": "weather"})
    first = client.responses.create(
        model="fake", input="Weather in Paris?", tools=[TOOL], conversation=conversation.id
    )
    assert first.conversation is not None and first.conversation.id == conversation.id
    (call,) = [item for item in first.output if item.type == "function_call"]
    json.loads(call.arguments)

    server.stop()
    server.start()

    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    second = client.responses.create(
        model="fake",
        conversation=conversation.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}],
        tools=[TOOL],
    )
    assert second.status == "completed" and second.output_text
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [item.type for item in items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    chained = client.responses.create(model="fake", previous_response_id=second.id, input="more")
    third = client.responses.create(model="fake", previous_response_id=chained.id, input="again")
    context = list(client.responses.input_items.list(third.id, order="asc"))
    assert [getattr(item, "role", item.type) for item in context] == [
        "user",
        "function_call",
        "function_call_output",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert client.conversations.retrieve(conversation.id).metadata == {"topic": "weather"}
