"""Tether in front of a Responses API upstream (the mock), end to end.

Models `resp-*` of the shared server use the `responses` provider against the mock
Responses upstream (`tests.support.mock_responses`; each model's upstream name is a
script there). Tether must re-issue everything under its own ids and numbering, keep
the state itself (the upstream gets `store: false` and the whole context), and turn
the upstream's failures, cut-offs and cancels into its own terminal events.

Each test puts a unique marker in its input to find its own upstream requests among
those of other tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.responses import (
    FunctionToolParam,
    ResponseFunctionToolCall,
    ResponseFunctionWebSearch,
    ResponseOutputMessage,
    ResponseOutputText,
)
from openai.types.responses.response_function_web_search import ActionSearch
from openai.types.responses.response_output_text import AnnotationURLCitation

from tests.support.grammar import check_frames, check_stream
from tests.support.mock_responses import open_streams, recorded_requests
from tests.support.openresponses import validate_event, validate_response
from tests.support.server import UPSTREAM_KEY, TetherProcess
from tests.support.sse import SSE, assert_gapless, wait_terminal, wire

TIMEOUT = 15.0
SLOW_TEXT = "".join(f"w{i} " for i in range(12))  # what `resp-slow` (slow-12) writes
WEATHER_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


@pytest.fixture
def sdk(client: openai.OpenAI) -> openai.OpenAI:
    return client.with_options(timeout=TIMEOUT)


def marker() -> str:
    return f"m{uuid.uuid4().hex[:12]}"


def sent_upstream(mock_url: str, mark: str, path: str = "/v1/responses") -> list[dict[str, Any]]:
    """The requests Tether sent the mock at `path` whose body contains `mark`, oldest first."""
    requests = asyncio.run(recorded_requests(mock_url))
    return [r for r in requests if r["path"] == path and mark in orjson.dumps(r["body"]).decode()]


def stream_raw(server: TetherProcess, body: dict[str, Any]) -> bytes:
    """POST a streamed create and read the whole SSE body."""
    with httpx.stream(
        "POST", f"{server.base_url}/responses", json={**body, "stream": True}, timeout=TIMEOUT
    ) as response:
        assert response.status_code == 200, response.read()
        return response.read()


def checked_stream(
    server: TetherProcess, body: dict[str, Any], *, open_responses: bool = True
) -> list[dict[str, Any]]:
    """The events of a streamed create, checked for framing, grammar and (unless they
    carry OpenAI's hosted tools, which Open Responses does not define) the Open Responses
    schemas; the API key must not leak into them."""
    raw = stream_raw(server, body)
    assert UPSTREAM_KEY.encode() not in raw
    events = check_frames(raw)
    check_stream(events)
    for event in events if open_responses else ():
        validate_event(event)
    return events


def deltas(events: list[dict[str, Any]], kind: str = "response.output_text.delta") -> str:
    return "".join(e["delta"] for e in events if e["type"] == kind)


def message_text(snapshot: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in snapshot["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


# --- re-numbering -----------------------------------------------------------------------


def test_resp_stream_is_renumbered_under_tethers_own_ids(
    server: TetherProcess, mock_responses_url: str
) -> None:
    mark = marker()
    text = f"renumber {mark} these words"
    events = checked_stream(
        server, {"model": "resp-echo", "input": text, "instructions": "Be brief."}
    )

    created, final = events[0], events[-1]["response"]
    assert created["type"] == "response.created"
    assert created["sequence_number"] == 0
    response_id = created["response"]["id"]
    assert response_id.startswith("resp_") and response_id != "resp_mock"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"
    assert final["id"] == response_id
    assert final["model"] == "resp-echo"  # Tether's model name, not the upstream's
    (message,) = final["output"]
    assert message["id"].startswith("msg_") and "mock" not in message["id"]
    assert deltas(events) == text == message_text(final)
    # Usage is the upstream's: its input words (instructions + input) and one per delta.
    assert final["usage"]["input_tokens"] == 2 + 4
    assert final["usage"]["output_tokens"] == 4
    assert final["usage"]["total_tokens"] == 10
    validate_response(final)
    (sent,) = sent_upstream(mock_responses_url, mark)
    assert sent["body"]["model"] == "echo"
    assert sent["body"]["stream"] is True
    assert sent["body"]["store"] is False
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_resp_events_tether_does_not_forward_leave_no_gap(server: TetherProcess) -> None:
    """The upstream's web_search_call progress events are not passed on: Tether's numbers
    differ from the upstream's and still run without gaps."""
    body = {"model": "resp-web", "input": "search", "tools": [{"type": "web_search"}]}
    events = checked_stream(server, body, open_responses=False)
    types = [e["type"] for e in events]
    assert not any(t.startswith("response.web_search_call.") for t in types)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
    ]


# --- resume across the upstream stream --------------------------------------------------


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_resp_resume_after_disconnect_is_gapless_and_equals_replay(
    server: TetherProcess, mock_responses_url: str, background: bool
) -> None:
    mark = marker()
    body = {"model": "resp-slow", "input": mark, "stream": True, "background": background}
    first = SSE.post(server, body)
    head = first.read(6)
    first.close()
    response_id = head[0].payload["response"]["id"]
    assert [f.seq for f in head] == list(range(6))

    rest = SSE.get(server, response_id, starting_after=5).read_all()
    joined = head + rest
    assert_gapless(joined)
    assert joined[-1].event == "response.completed"
    assert message_text(joined[-1].payload["response"]) == SLOW_TEXT

    replay = SSE.get(server, response_id).read_all()
    assert wire(replay) == wire(joined)
    # One upstream stream served the live reader, the resumed one and the replay.
    assert len(sent_upstream(mock_responses_url, mark)) == 1


def test_resp_resume_with_sdk_starting_after(sdk: openai.OpenAI) -> None:
    live: list[Any] = []
    with sdk.responses.create(model="resp-slow", input="hi", stream=True) as stream:
        for event in stream:
            live.append(event)
            if event.type == "response.output_text.delta":
                break
    response_id = live[0].response.id
    last = live[-1].sequence_number

    with sdk.responses.retrieve(response_id, stream=True, starting_after=last) as resumed:
        rest = list(resumed)
    numbers = [event.sequence_number for event in live + rest]
    assert numbers == list(range(len(numbers)))
    assert rest[-1].type == "response.completed"
    assert rest[-1].response.output_text == SLOW_TEXT
    with sdk.responses.retrieve(response_id, stream=True) as replayed:
        full = list(replayed)
    assert full == live + rest  # pydantic models compare field by field


# --- function calls and the tool loop ---------------------------------------------------


def test_resp_function_call_streams_as_function_call_item(server: TetherProcess) -> None:
    events = checked_stream(
        server, {"model": "resp-tool", "input": "weather?", "tools": [WEATHER_TOOL]}
    )
    pieces = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert pieces == ['{"city":', ' "Paris"', "}"]
    (call,) = events[-1]["response"]["output"]
    assert call["type"] == "function_call"
    assert call["id"].startswith("fc_") and "mock" not in call["id"]
    assert call["name"] == "get_weather"
    assert call["arguments"] == '{"city": "Paris"}'
    assert call["status"] == "completed"


def test_resp_tool_loop_sends_whole_context_upstream(
    sdk: openai.OpenAI, mock_responses_url: str
) -> None:
    mark = marker()
    question = f"Weather in Paris? {mark}"
    first = sdk.responses.create(
        model="resp-tool", input=question, tools=[WEATHER_TOOL], instructions="Be brief."
    )
    assert first.status == "completed"
    (call,) = first.output
    assert isinstance(call, ResponseFunctionToolCall)
    second = sdk.responses.create(
        model="resp-echo",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}],
        tools=[WEATHER_TOOL],
    )
    assert second.status == "completed"
    assert second.previous_response_id == first.id
    assert second.output_text == question  # the echo of the last user message

    _, sent = sent_upstream(mock_responses_url, mark)
    body = sent["body"]
    assert body["store"] is False
    assert "previous_response_id" not in body
    assert "instructions" not in body  # not inherited from the first turn
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
    ]
    dumped = orjson.dumps(body).decode()
    tether_ids = [first.id, second.id, call.id] + [
        item.id for item in sdk.responses.input_items.list(second.id)
    ]
    assert not [i for i in tether_ids if i and i in dumped]


# --- reasoning and hosted tools ---------------------------------------------------------


def test_resp_reasoning_summary_then_text(server: TetherProcess) -> None:
    events = checked_stream(server, {"model": "resp-reasoning", "input": "think"})
    final = events[-1]["response"]
    reasoning, message = final["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["id"].startswith("rs_") and "mock" not in reasoning["id"]
    assert reasoning["summary"] == [
        {"type": "summary_text", "text": "Think first."},
        {"type": "summary_text", "text": "Then answer."},
    ]
    added = [e for e in events if e["type"] == "response.reasoning_summary_part.added"]
    assert [e["summary_index"] for e in added] == [0, 1]
    assert message["type"] == "message"
    assert message_text(final) == deltas(events) == "42"
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 4
    assert final["usage"]["output_tokens"] == 5
    validate_response(final)


def test_resp_hosted_tool_item_and_url_citation_pass_through(
    sdk: openai.OpenAI, mock_responses_url: str
) -> None:
    mark = marker()
    response = sdk.responses.create(
        model="resp-web", input=f"search {mark}", tools=[{"type": "web_search"}]
    )
    assert response.status == "completed"
    search, message = response.output
    assert isinstance(search, ResponseFunctionWebSearch)
    assert search.status == "completed"
    assert isinstance(search.action, ActionSearch)
    assert search.action.query == "tether responses api"
    assert isinstance(message, ResponseOutputMessage)
    assert response.output_text == "Tether is durable."
    (part,) = message.content
    assert isinstance(part, ResponseOutputText)
    (annotation,) = part.annotations
    assert isinstance(annotation, AnnotationURLCitation)
    assert annotation.url == "https://example.com/tether"
    assert (annotation.start_index, annotation.end_index) == (0, 6)
    (sent,) = sent_upstream(mock_responses_url, mark)
    assert sent["body"]["tools"] == [{"type": "web_search"}]
    assert sdk.responses.retrieve(response.id) == response


# --- upstream failures ------------------------------------------------------------------

MID_STREAM_FAILURES = [
    pytest.param("resp-drop", "server_error", "dropped the connection", "w0 w1 w2 ", id="drop"),
    pytest.param(
        "resp-failed", "server_error", "mock upstream failure (server_error)", "w0 ", id="failed"
    ),
    pytest.param(
        "resp-error-event", "rate_limit_exceeded", "Rate limit reached", "w0 ", id="error-event"
    ),
]


@pytest.mark.parametrize(("model", "code", "phrase", "partial"), MID_STREAM_FAILURES)
def test_resp_failure_mid_stream_ends_with_error_then_failed(
    server: TetherProcess, model: str, code: str, phrase: str, partial: str
) -> None:
    events = checked_stream(server, {"model": model, "input": "hi"})
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert deltas(events) == partial
    error, failed = events[-2], events[-1]["response"]
    assert error["code"] == code
    assert phrase in error["message"]
    assert f"'{model}'" in error["message"]  # names the Tether model
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": code, "message": error["message"]}
    assert message_text(failed) == partial  # the partial output is kept
    stored = httpx.get(f"{server.base_url}/responses/{failed['id']}", timeout=TIMEOUT).json()
    assert stored == failed


def test_resp_upstream_429_fails_with_rate_limit_exceeded(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(model="resp-429", input="hi")
    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == "rate_limit_exceeded"
    assert "'resp-429'" in response.error.message
    assert "HTTP 429" in response.error.message
    assert UPSTREAM_KEY not in response.error.message
    assert response.output == []


def test_resp_upstream_incomplete_ends_incomplete(
    server: TetherProcess, mock_responses_url: str
) -> None:
    mark = marker()
    events = checked_stream(
        server, {"model": "resp-text", "input": f"cut {mark}", "max_output_tokens": 16}
    )
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["completed_at"] is None
    assert message_text(final) == "".join(f"w{i} " for i in range(16))
    assert final["usage"]["output_tokens"] == 16
    validate_response(final)
    (sent,) = sent_upstream(mock_responses_url, mark)
    assert sent["body"]["max_output_tokens"] == 16


# --- cancel -----------------------------------------------------------------------------


def test_resp_cancel_closes_the_upstream_stream(
    server: TetherProcess, client: openai.OpenAI, mock_responses_url: str
) -> None:
    body = {"model": "resp-very-slow", "input": "hi", "background": True, "stream": True}
    reader = SSE.post(server, body)
    head = reader.read_until("response.output_text.delta", times=2)
    response_id = head[0].payload["response"]["id"]
    assert asyncio.run(open_streams(mock_responses_url)) >= 1

    answer = httpx.post(f"{server.base_url}/responses/{response_id}/cancel", timeout=TIMEOUT)
    assert answer.status_code == 200
    frames = head + reader.read_all()
    assert_gapless(frames)
    assert frames[-1].event == "response.cancelled"
    assert frames[-1].payload["response"]["status"] == "cancelled"

    deadline = time.monotonic() + 3
    while asyncio.run(open_streams(mock_responses_url)) > 0:
        assert time.monotonic() < deadline, "the upstream stream stayed open after cancel"
        time.sleep(0.05)
    assert wait_terminal(client, response_id).status == "cancelled"


# --- input tokens -----------------------------------------------------------------------


def test_resp_input_tokens_count_is_the_upstreams(
    sdk: openai.OpenAI, mock_responses_url: str
) -> None:
    mark = marker()
    counted = sdk.responses.input_tokens.count(
        model="resp-echo", input=f"one two three {mark}", instructions="Be brief."
    )
    assert counted.input_tokens == 4 + 2  # the mock counts words
    (sent,) = sent_upstream(mock_responses_url, mark, "/v1/responses/input_tokens")
    assert sent["body"]["model"] == "echo"
    assert sent["body"]["instructions"] == "Be brief."
