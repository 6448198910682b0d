"""`POST /v1/responses` in each of its modes, end to end against a real `tether serve`.

Modes: blocking (non-stream), stream, background, background + stream, `store=false`;
endings: completed, incomplete (`max_output_tokens`), failed (model error). Streams are
read through the official SDK and, where bytes matter or the SDK would raise, with raw
httpx. Every stream is checked against the ordering grammar (`tests.support.grammar`)
and the Open Responses schemas (`tests.support.openresponses`).

The fake models are deterministic: `fake` writes 32 lorem-ipsum words, `slow` 60 words at
40 per second, `failing` fails after 5 words, `echo` repeats the last user message, and
`stalled` waits a minute before its first word. Usage counts words.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response

from tests.support.grammar import check_frames, check_stream
from tests.support.openresponses import validate_event, validate_response
from tests.support.server import TetherProcess

LOREM = [
    *("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed"),
    *("do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna"),
    *("aliqua", "ut", "enim", "ad", "minim", "veniam", "quis", "nostrud"),
]
HANG_GUARD_SECONDS = 30.0  # only to turn a hang into a failure; never a speed check


def lorem(words: int) -> str:
    """The text of a `fake`-provider model configured with `output_tokens=words`."""
    return " ".join(LOREM[i % len(LOREM)] for i in range(words))


FAKE_TEXT = lorem(32)
SLOW_TEXT = lorem(60)


# --- helpers ----------------------------------------------------------------------


def sdk_events(stream: Iterable[Any]) -> list[dict[str, Any]]:
    """The events of an SDK stream as plain dicts (the fields the server sent)."""
    return [event.to_dict() for event in stream]


def check_events(events: list[dict[str, Any]]) -> None:
    """The grammar of the whole stream, and the schema of every event the spec covers."""
    check_stream(events)
    for event in events:
        validate_event(event)


def message_text(response: dict[str, Any]) -> str:
    """The text of the output message(s) of a Response dict (what `output_text` gives)."""
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def deltas(events: list[dict[str, Any]]) -> list[str]:
    return [e["delta"] for e in events if e["type"] == "response.output_text.delta"]


def finished(response: Response) -> bool:
    return response.status not in ("queued", "in_progress")


def wait_until(
    client: openai.OpenAI,
    response_id: str,
    done: Callable[[Response], object] = finished,
    *,
    interval: float = 0.02,
) -> Response:
    """Poll `retrieve` until `done(response)` is true (by default: a terminal status)."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        response = client.responses.retrieve(response_id)
        if done(response):
            return response
        if time.monotonic() > deadline:
            pytest.fail(f"{response_id} still {response.status} after {HANG_GUARD_SECONDS} s")
        time.sleep(interval)


def raw_stream(server: TetherProcess, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    """POST a streaming create with plain httpx; the response (headers) and all its bytes."""
    with httpx.stream(
        "POST", f"{server.base_url}/responses", json=body, timeout=HANG_GUARD_SECONDS
    ) as response:
        raw = response.read()
    return response, raw


# --- blocking ---------------------------------------------------------------------


def test_create_blocking_returns_completed_response(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="fake", input="hi")
    body = raw.http_response.json()

    response = Response.model_validate(body)
    validate_response(body)
    assert raw.headers.get("x-request-id")
    assert response.status == "completed"
    assert response.error is None and response.incomplete_details is None
    assert response.output_text == FAKE_TEXT
    [item] = body["output"]
    assert (item["type"], item["role"], item["status"]) == ("message", "assistant", "completed")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1, 32)
    assert response.usage.total_tokens == 33
    assert isinstance(body["completed_at"], int)
    assert body["completed_at"] >= body["created_at"]
    assert body["store"] is True
    assert body["background"] is False
    assert client.responses.retrieve(response.id).to_dict() == response.to_dict()


def test_create_blocking_echoes_instructions(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="echo", input="say this", instructions="Answer in one line."
    )
    assert response.status == "completed"
    assert response.instructions == "Answer in one line."
    assert response.output_text == "say this"
    assert response.usage is not None
    assert response.usage.input_tokens == 2 + 4  # input words + instruction words


# --- stream -----------------------------------------------------------------------


def test_create_stream_follows_grammar_and_spec(client: openai.OpenAI) -> None:
    events = sdk_events(client.responses.create(model="fake", input="hi", stream=True))

    check_events(events)
    assert events[0]["response"]["status"] == "in_progress"
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    final = events[-1]
    assert final["type"] == "response.completed"
    assert "".join(deltas(events)) == FAKE_TEXT
    assert message_text(final["response"]) == FAKE_TEXT
    validate_response(final["response"])


def test_create_stream_final_snapshot_equals_retrieve(client: openai.OpenAI) -> None:
    events = sdk_events(client.responses.create(model="fake", input="hi", stream=True))
    final = events[-1]["response"]

    stored = client.responses.retrieve(final["id"])

    assert stored.to_dict() == final
    assert stored.status == "completed"
    assert stored.usage is not None and stored.completed_at is not None


def test_create_stream_raw_frames_are_exact(server: TetherProcess) -> None:
    response, raw = raw_stream(server, {"model": "fake", "input": "hi", "stream": True})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers.get("x-request-id")
    events = check_frames(raw)
    check_events(events)
    assert events[-1]["type"] == "response.completed"


def test_create_stream_helper_returns_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="fake", input="hi") as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()

    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert final.status == "completed"
    assert final.output_text == FAKE_TEXT
    stored = client.responses.retrieve(final.id)
    assert stored.output_text == final.output_text
    assert stored.usage == final.usage


# --- background -------------------------------------------------------------------


def test_create_background_returns_queued_at_once(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="fake", input="hi", background=True)
    body = raw.http_response.json()

    validate_response(body)
    response = Response.model_validate(body)
    assert response.status == "queued"
    assert response.background is True
    assert response.output == []
    assert response.usage is None
    assert response.completed_at is None
    done = wait_until(client, response.id)
    assert done.status == "completed"
    assert done.output_text == FAKE_TEXT
    assert done.usage is not None and done.completed_at is not None


def test_create_background_snapshot_while_running_matches_events(client: openai.OpenAI) -> None:
    created = client.responses.create(model="slow", input="hi", background=True)

    running = wait_until(client, created.id, lambda r: r.status != "queued" and r.output_text)
    stream = client.responses.retrieve(created.id, stream=True)
    events = sdk_events(stream)

    assert running.status == "in_progress"
    assert running.usage is None and running.completed_at is None
    check_events(events)
    pieces = deltas(events)
    assert "".join(pieces) == SLOW_TEXT
    prefixes = {"".join(pieces[:k]) for k in range(1, len(pieces) + 1)}
    assert running.output_text in prefixes, "the snapshot is not a fold of a prefix of the log"
    snapshot: dict[str, Any] = running.to_dict()
    [item] = snapshot["output"]
    assert item["status"] == "in_progress"
    [added] = [e for e in events if e["type"] == "response.output_item.added"]
    assert item["id"] == added["item"]["id"]
    assert client.responses.retrieve(created.id).to_dict() == events[-1]["response"]


def test_create_background_stream_starts_queued(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="fake", input="hi", background=True, stream=True)
    events = sdk_events(stream)

    check_events(events)
    assert [e["type"] for e in events[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert [e["response"]["status"] for e in events[:3]] == ["queued", "queued", "in_progress"]
    assert all(e["response"]["background"] is True for e in events[:3])
    final = events[-1]
    assert final["type"] == "response.completed"
    assert message_text(final["response"]) == FAKE_TEXT
    assert client.responses.retrieve(final["response"]["id"]).to_dict() == final["response"]


def test_create_background_stream_helper_replays_finished_response(
    client: openai.OpenAI,
) -> None:
    created = client.responses.create(model="fake", input="hi", background=True)
    done = wait_until(client, created.id)

    with client.responses.stream(response_id=created.id) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()

    assert types[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert final.id == created.id
    assert final.status == "completed"
    assert final.output_text == done.output_text == FAKE_TEXT
    assert final.usage == done.usage


def test_create_background_resume_sends_keepalives(server: TetherProcess) -> None:
    base = server.base_url
    created = httpx.post(
        f"{base}/responses", json={"model": "stalled", "input": "hi", "background": True}
    ).json()
    assert created["status"] == "queued"
    url = f"{base}/responses/{created['id']}?stream=true"
    received = b""
    try:
        with httpx.stream("GET", url, timeout=HANG_GUARD_SECONDS) as response:
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            # Two heartbeats (1 s apart on the test server) or the hang guard.
            for chunk in response.iter_raw():
                received += chunk
                if received.count(b": keepalive\n\n") >= 2:
                    break
    finally:
        cancel = httpx.post(f"{base}/responses/{created['id']}/cancel")

    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["status"] == "cancelled"
    types = [e["type"] for e in check_frames(received, ended=False)]
    assert types[:2] == ["response.created", "response.queued"]
    assert types[2:] in ([], ["response.in_progress"])  # the worker may not have started


# --- store=false ------------------------------------------------------------------


def test_create_unstored_stream_is_not_retrievable(client: openai.OpenAI) -> None:
    events = sdk_events(client.responses.create(model="fake", input="hi", stream=True, store=False))

    check_events(events)
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert final["store"] is False
    assert message_text(final) == FAKE_TEXT
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final["id"])


def test_create_unstored_blocking_is_not_retrievable(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="fake", input="hi", store=False)
    body = raw.http_response.json()

    validate_response(body)
    assert body["status"] == "completed"
    assert body["store"] is False
    assert message_text(body) == FAKE_TEXT
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(body["id"])


# --- incomplete -------------------------------------------------------------------


def assert_cut_at_16_tokens(response: dict[str, Any]) -> None:
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["completed_at"] is None
    assert response["error"] is None
    [item] = response["output"]
    assert item["status"] == "incomplete"
    text = message_text(response)
    assert FAKE_TEXT.startswith(text)
    assert len(text.split()) == 16
    assert response["usage"]["output_tokens"] == 16


def test_create_blocking_max_output_tokens_returns_incomplete(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="fake", input="hi", max_output_tokens=16)
    body = raw.http_response.json()

    validate_response(body)
    Response.model_validate(body)
    assert_cut_at_16_tokens(body)
    assert body["max_output_tokens"] == 16


def test_create_stream_max_output_tokens_ends_incomplete(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="fake", input="hi", stream=True, max_output_tokens=16)
    events = sdk_events(stream)

    check_events(events)
    assert events[-1]["type"] == "response.incomplete"
    assert not any(e["type"] == "response.completed" for e in events)
    [item_done] = [e for e in events if e["type"] == "response.output_item.done"]
    assert item_done["item"]["status"] == "incomplete"
    final = events[-1]["response"]
    assert_cut_at_16_tokens(final)
    assert client.responses.retrieve(final["id"]).to_dict() == final


# --- failed -----------------------------------------------------------------------


def test_create_stream_failure_ends_with_error_then_failed(server: TetherProcess) -> None:
    response, raw = raw_stream(server, {"model": "failing", "input": "hi", "stream": True})

    assert response.status_code == 200
    events = check_frames(raw)
    check_events(events)
    error, failed = events[-2:]
    assert error["type"] == "error"
    assert error["code"] == "server_error"
    assert "fail" in error["message"]
    assert error["param"] is None
    assert error["error"] == {
        "type": "server_error",
        "code": "server_error",
        "message": error["message"],
        "param": None,
    }
    assert failed["type"] == "response.failed"
    snapshot = failed["response"]
    assert snapshot["status"] == "failed"
    assert snapshot["error"] == {"code": "server_error", "message": error["message"]}
    assert snapshot["completed_at"] is None
    assert "".join(deltas(events)) == lorem(5) + " "


def test_create_stream_failure_raises_api_error_in_sdk(client: openai.OpenAI) -> None:
    stream = client.responses.create(model="failing", input="hi", stream=True)
    seen: list[str] = []

    with pytest.raises(openai.APIError) as raised:
        for event in stream:
            seen.append(event.type)

    assert "fail" in raised.value.message
    assert seen[0] == "response.created"
    assert "response.failed" not in seen


def test_create_blocking_failure_returns_failed(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="failing", input="hi")
    body = raw.http_response.json()

    assert raw.status_code == 200
    validate_response(body)
    response = Response.model_validate(body)
    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == "server_error"
    assert "fail" in response.error.message
    assert response.completed_at is None
    assert client.responses.retrieve(response.id).status == "failed"


# --- echo -------------------------------------------------------------------------


def test_create_echo_returns_input_text(client: openai.OpenAI) -> None:
    response = client.responses.create(model="echo", input="one two three")

    assert response.status == "completed"
    assert response.output_text == "one two three"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 3)


def test_create_echo_accepts_message_history(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="echo",
        input=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Repeat the user."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "input_text", "text": "second question"}]},
        ],
    )

    assert response.status == "completed"
    assert response.output_text == "second question"
    items = client.responses.input_items.list(response.id, order="asc")
    assert [item.to_dict()["role"] for item in items.data] == [
        "system",
        "developer",
        "user",
        "assistant",
        "user",
    ]
