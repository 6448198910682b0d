"""Cancelling responses (`POST /v1/responses/{id}/cancel`) against a real `tether serve`:
the cancelled snapshot, the live stream's terminal `response.cancelled`, stickiness,
the 400/404 answers, and cancel racing completion.

The raw SSE reader lives in `test_resume.py` (tests may only add these files for now;
it belongs in `tests/support/`).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from tests.support.server import TetherProcess
from tests.support.sse import (
    READ_TIMEOUT,
    SSE,
    Frame,
    assert_gapless,
    wait_terminal,
    wire,
)

COMPLETED_ERROR = {
    "message": "Cannot cancel a completed response.",
    "type": "invalid_request_error",
    "param": None,
    "code": None,
}


def cancel(server: TetherProcess, response_id: str) -> httpx.Response:
    return httpx.post(f"{server.base_url}/responses/{response_id}/cancel", timeout=READ_TIMEOUT)


def streamed_text(frames: list[Frame]) -> str:
    return "".join(f.payload["delta"] for f in frames if f.event == "response.output_text.delta")


def assert_cancelled_snapshot(snapshot: dict[str, Any], text: str) -> None:
    """Status cancelled, no usage, no completed_at, the partial output kept as it was."""
    assert snapshot["status"] == "cancelled"
    assert snapshot["usage"] is None
    assert snapshot["completed_at"] is None
    [message] = snapshot["output"]
    assert message["status"] == "in_progress"
    assert message["content"][0]["text"] == text


# --- cancelling a running response -----------------------------------------------


def test_cancel_background_stream_ends_with_cancelled_snapshot(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    reader = SSE.post(
        server, {"model": "very-slow", "input": "hi", "background": True, "stream": True}
    )
    head = reader.read_until("response.output_text.delta", times=3)
    response_id = head[0].payload["response"]["id"]

    answer = cancel(server, response_id)
    assert answer.status_code == 200
    snapshot = answer.json()
    frames = head + reader.read_all()

    assert_gapless(frames)
    assert frames[-1].event == "response.cancelled"
    assert frames[-1].payload["response"] == snapshot
    assert_cancelled_snapshot(snapshot, streamed_text(frames))
    assert len(streamed_text(frames)) > 0

    time.sleep(1.2)  # a runner that did not stop would append (and complete) meanwhile
    assert client.responses.retrieve(response_id).status == "cancelled"
    later = httpx.get(f"{server.base_url}/responses/{response_id}", timeout=READ_TIMEOUT)
    assert later.json() == snapshot
    assert wire(SSE.get(server, response_id).read_all()) == wire(frames)


def test_cancel_stalled_background_response_is_cancelled_at_once(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    created = client.responses.create(model="stalled", input="hi", background=True)

    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert cancelled.output == []
    assert cancelled.usage is None
    replay = SSE.get(server, created.id).read_all()
    assert_gapless(replay)
    assert replay[-1].event == "response.cancelled"
    assert client.responses.retrieve(created.id).status == "cancelled"


def test_cancel_queued_background_response_never_runs(make_server: Any) -> None:
    """With one worker slot held by `very-slow`, a second response waits unclaimed."""
    private = make_server(TETHER_WORKER_CONCURRENCY="1")
    client = openai.OpenAI(base_url=private.base_url, api_key="test", max_retries=0, timeout=10)
    busy = client.responses.create(model="very-slow", input="hi", background=True)
    queued = client.responses.create(model="fake", input="hi", background=True)
    assert client.responses.retrieve(queued.id).status == "queued"

    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert cancelled.output == []
    client.responses.cancel(busy.id)  # frees the slot; the cancelled job must not take it
    assert client.responses.create(model="fake", input="hi").status == "completed"
    replay = SSE.get(private, queued.id).read_all()
    assert [f.event for f in replay] == [
        "response.created",
        "response.queued",
        "response.cancelled",
    ]


def test_cancel_stored_foreground_stream_ends_with_cancelled(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    reader = SSE.post(server, {"model": "very-slow", "input": "hi", "stream": True, "store": True})
    head = reader.read_until("response.output_text.delta", times=2)
    response_id = head[0].payload["response"]["id"]
    assert head[0].payload["response"]["background"] is False

    answer = cancel(server, response_id)
    assert answer.status_code == 200
    frames = head + reader.read_all()

    assert_gapless(frames)
    assert frames[-1].event == "response.cancelled"
    assert frames[-1].payload["response"] == answer.json()
    assert_cancelled_snapshot(answer.json(), streamed_text(frames))
    assert client.responses.retrieve(response_id).status == "cancelled"


# --- repeated, late and unknown cancels ------------------------------------------


def test_cancel_twice_returns_the_same_cancelled_response(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    created = client.responses.create(model="very-slow", input="hi", background=True)

    first, second = cancel(server, created.id), cancel(server, created.id)
    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert second.json() == first.json()
    assert client.responses.cancel(created.id).status == "cancelled"


def test_cancel_completed_response_is_400(server: TetherProcess, client: openai.OpenAI) -> None:
    response = client.responses.create(model="fake", input="hi")
    assert response.status == "completed"

    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(response.id)
    assert caught.value.status_code == 400
    assert "Cannot cancel a completed response." in caught.value.message
    answer = cancel(server, response.id)
    assert answer.status_code == 400
    assert answer.json() == {"error": COMPLETED_ERROR}
    assert client.responses.retrieve(response.id).status == "completed"


@pytest.mark.parametrize(
    ("model", "options", "status"),
    [("failing", {}, "failed"), ("fake", {"max_output_tokens": 16}, "incomplete")],
)
def test_cancel_finished_unsuccessful_response_is_400(
    client: openai.OpenAI, model: str, options: dict[str, Any], status: str
) -> None:
    response = client.responses.create(model=model, input="hi", **options)
    assert response.status == status

    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(response.id)
    assert status in caught.value.message
    assert client.responses.retrieve(response.id).status == status


def test_cancel_incomplete_response_message_is_grammatical(client: openai.OpenAI) -> None:
    response = client.responses.create(model="fake", input="hi", max_output_tokens=16)
    assert response.status == "incomplete"

    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(response.id)
    assert "Cannot cancel an incomplete response." in caught.value.message


def test_cancel_unknown_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_doesnotexist")


# --- cancel racing completion ----------------------------------------------------


def test_cancel_racing_completion_has_one_outcome(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    """`slow` runs ~1.5 s; one cancel lands at once, one well after the end, the others
    around the end. Cancel and completion never both win."""
    rng = random.Random(20240611)
    delays = [0.0, 2.4] + [rng.uniform(1.2, 1.8) for _ in range(8)]
    answers: dict[str, httpx.Response] = {}

    def create_then_cancel(delay: float) -> None:
        response_id = client.responses.create(model="slow", input="hi", background=True).id
        time.sleep(delay)
        answers[response_id] = cancel(server, response_id)

    threads = [threading.Thread(target=create_then_cancel, args=(d,)) for d in delays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(answers) == len(delays)

    time.sleep(0.3)  # a losing runner would have appended by now
    outcomes = []
    for response_id, answer in answers.items():
        final = wait_terminal(client, response_id)
        log = SSE.get(server, response_id).read_all()
        assert_gapless(log)
        assert log[-1].payload["response"]["status"] == final.status
        if answer.status_code == 200:
            assert final.status == "cancelled"
            assert log[-1].event == "response.cancelled"
            assert answer.json() == log[-1].payload["response"]
        else:
            assert answer.status_code == 400, answer.text
            assert answer.json() == {"error": COMPLETED_ERROR}
            assert final.status == "completed"
            assert log[-1].event == "response.completed"
        outcomes.append(final.status)
    assert {"cancelled", "completed"} <= set(outcomes), outcomes
