"""Tether in front of a Chat Completions upstream (the mock), end to end.

Models `chat-*` of the shared server point at the mock upstream; `recorded_requests`
shows what Tether sent it. Each test puts a unique marker in its input to find its
own upstream request among those of other tests.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.support.mock_chat import recorded_requests
from tests.support.server import TetherProcess

TIMEOUT = 15.0
UPSTREAM_KEY = "sk-upstream-secret-0123456789"


@pytest.fixture
def sdk(client: openai.OpenAI) -> openai.OpenAI:
    return client.with_options(timeout=TIMEOUT)


def marker() -> str:
    return f"m{uuid.uuid4().hex[:12]}"


def sent_upstream(mock_chat_url: str, mark: str) -> dict[str, Any]:
    """The one request Tether sent upstream whose messages contain `mark`."""
    requests = asyncio.run(recorded_requests(mock_chat_url))
    mine = [r for r in requests if mark in orjson.dumps(r["body"]["messages"]).decode()]
    assert len(mine) == 1, mine
    return mine[0]


def stream_raw(server: TetherProcess, body: dict[str, Any]) -> bytes:
    """POST a streamed create and read the whole SSE body."""
    with httpx.stream(
        "POST", f"{server.base_url}/responses", json={**body, "stream": True}, timeout=TIMEOUT
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.read()


def sse_events(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The events of an SSE body, and whether it ended with `data: [DONE]`.

    Checks the framing on the way: each frame is `event: <type>` then one `data:` line
    whose JSON `type` equals the event name; `[DONE]` comes last if at all.
    """
    events: list[dict[str, Any]] = []
    done = False
    for frame in raw.split(b"\n\n"):
        if not frame or frame.startswith(b":"):
            continue
        assert not done, f"a frame after [DONE]: {frame!r}"
        if frame == b"data: [DONE]":
            done = True
            continue
        name, data = frame.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: "), frame
        event = orjson.loads(data[len(b"data: ") :])
        assert event["type"] == name[len(b"event: ") :].decode()
        events.append(event)
    return events, done


def output_text(snapshot: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in snapshot["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


# --- chat-echo ---------------------------------------------------------------------------


def test_chat_echo_create_returns_upstream_text_and_usage(
    sdk: openai.OpenAI, mock_chat_url: str
) -> None:
    mark = marker()
    text = f"hello {mark} from the test"
    response = sdk.responses.create(
        model="chat-echo", input=text, instructions="Answer tersely.", max_output_tokens=64
    )
    assert response.status == "completed"
    assert response.output_text == text
    assert response.usage is not None
    assert response.usage.input_tokens == 2 + 5  # the mock counts words of every message
    assert response.usage.output_tokens == 5
    assert response.usage.total_tokens == 12


def test_chat_echo_stream_returns_upstream_text_and_usage(sdk: openai.OpenAI) -> None:
    mark = marker()
    text = f"streamed {mark} words come back"
    deltas: list[str] = []
    final: Any = None
    with sdk.responses.create(model="chat-echo", input=text, stream=True) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
    assert "".join(deltas) == text
    assert final is not None
    assert final.output_text == text
    assert final.usage.input_tokens == 5
    assert final.usage.output_tokens == 5
    assert sdk.responses.retrieve(final.id).output_text == text


def test_chat_echo_sends_chat_completions_request_upstream(
    sdk: openai.OpenAI, mock_chat_url: str
) -> None:
    mark = marker()
    text = f"what was sent {mark}"
    sdk.responses.create(
        model="chat-echo", input=text, instructions="Be brief.", max_output_tokens=32
    )
    sent = sent_upstream(mock_chat_url, mark)
    body, headers = sent["body"], sent["headers"]
    assert body["model"] == "echo"  # the model's upstream_model, not its Tether name
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": text},
    ]
    assert body["max_tokens"] == 32
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_chat_echo_omits_unset_max_tokens_upstream(sdk: openai.OpenAI, mock_chat_url: str) -> None:
    mark = marker()
    sdk.responses.create(model="chat-echo", input=f"no limit {mark}")
    body = sent_upstream(mock_chat_url, mark)["body"]
    assert "max_tokens" not in body
    assert body["messages"] == [{"role": "user", "content": f"no limit {mark}"}]


def test_chat_echo_cut_by_max_output_tokens_is_incomplete(
    sdk: openai.OpenAI, mock_chat_url: str
) -> None:
    mark = marker()
    words = [mark] + [f"word{i}" for i in range(39)]
    response = sdk.responses.create(model="chat-echo", input=" ".join(words), max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text.split() == words[:16]
    assert response.usage is not None
    assert response.usage.output_tokens == 16
    assert sent_upstream(mock_chat_url, mark)["body"]["max_tokens"] == 16


# --- upstream HTTP errors ------------------------------------------------------------------

UPSTREAM_ERRORS = [
    pytest.param("chat-500", "server_error", "mock upstream error 500", id="500"),
    pytest.param("chat-429", "rate_limit_exceeded", "mock upstream error 429", id="429"),
]


@pytest.mark.parametrize(("model", "code", "upstream_message"), UPSTREAM_ERRORS)
def test_chat_upstream_error_fails_blocking_create(
    server: TetherProcess, model: str, code: str, upstream_message: str
) -> None:
    response = httpx.post(
        f"{server.base_url}/responses", json={"model": model, "input": "hi"}, timeout=TIMEOUT
    )
    assert UPSTREAM_KEY not in response.text
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == code
    assert upstream_message in body["error"]["message"]
    assert model in body["error"]["message"]
    retrieved = httpx.get(f"{server.base_url}/responses/{body['id']}", timeout=TIMEOUT)
    assert retrieved.json() == body
    assert UPSTREAM_KEY not in retrieved.text


@pytest.mark.parametrize(("model", "code", "upstream_message"), UPSTREAM_ERRORS)
def test_chat_upstream_error_stream_ends_with_error_then_failed(
    server: TetherProcess, model: str, code: str, upstream_message: str
) -> None:
    raw = stream_raw(server, {"model": model, "input": "hi"})
    assert UPSTREAM_KEY.encode() not in raw
    events, done = sse_events(raw)
    assert done
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert [e["sequence_number"] for e in events] == [0, 1, 2, 3]
    error, failed = events[2], events[3]
    # The hybrid frame: the documented flat fields plus the nested object the SDK raises on.
    assert error["code"] == code
    assert upstream_message in error["message"]
    assert "param" in error
    nested = error["error"]
    assert nested["code"] == code
    assert nested["message"] == error["message"]
    assert "type" in nested and "param" in nested
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": code, "message": error["message"]}
    replay = httpx.get(
        f"{server.base_url}/responses/{failed['response']['id']}",
        params={"stream": "true"},
        timeout=TIMEOUT,
    )
    assert replay.content == raw
    assert UPSTREAM_KEY not in replay.text


@pytest.mark.parametrize(("model", "code", "upstream_message"), UPSTREAM_ERRORS)
def test_chat_upstream_error_raises_api_error_in_sdk_stream(
    sdk: openai.OpenAI, model: str, code: str, upstream_message: str
) -> None:
    seen: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for event in sdk.responses.create(model=model, input="hi", stream=True):
            seen.append(event.type)
    assert seen == ["response.created", "response.in_progress"]
    assert upstream_message in caught.value.message
    assert UPSTREAM_KEY not in str(caught.value)


# --- broken upstream streams --------------------------------------------------------------

BROKEN_STREAMS = [
    pytest.param("chat-drop", "dropped", "w0 w1 w2 ", id="drop"),
    pytest.param("chat-no-finish", "closed the stream", "w0 w1", id="no-finish"),
]


@pytest.mark.parametrize(("model", "phrase", "partial"), BROKEN_STREAMS)
def test_chat_broken_stream_fails_and_keeps_partial_text(
    sdk: openai.OpenAI, model: str, phrase: str, partial: str
) -> None:
    response = sdk.responses.create(model=model, input="hi")
    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == "server_error"
    assert phrase in response.error.message
    assert UPSTREAM_KEY not in response.error.message
    assert output_text(response.model_dump()) == partial
    assert sdk.responses.retrieve(response.id).model_dump() == response.model_dump()


@pytest.mark.parametrize(("model", "phrase", "partial"), BROKEN_STREAMS)
def test_chat_broken_stream_streams_partial_text_then_fails(
    server: TetherProcess, model: str, phrase: str, partial: str
) -> None:
    raw = stream_raw(server, {"model": model, "input": "hi"})
    assert UPSTREAM_KEY.encode() not in raw
    events, done = sse_events(raw)
    assert done
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == (
        partial
    )
    error, failed = events[-2], events[-1]["response"]
    assert error["code"] == "server_error"
    assert phrase in error["message"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": error["message"]}
    assert output_text(failed) == partial
