"""Resuming streams (`GET /v1/responses/{id}?stream=true[&starting_after=N]`) against a
real `tether serve`: a dropped reader picks up where it left off, gapless and
byte-identical to a full replay; stored generation survives its client; `store=false`
generation does not.

Streams are read with raw httpx and parsed here (`SSE`), so the test sees the exact
`event:`/`data:` lines on the wire. Every read is bounded by a deadline: a bug makes
a test fail, never hang.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.support.server import TetherProcess
from tests.support.sse import (
    READ_TIMEOUT,
    SSE,
    STREAM_DEADLINE,
    TERMINAL,
    Frame,
    assert_gapless,
    lorem,
    wait_terminal,
    wire,
)


@pytest.mark.parametrize(("model", "tokens"), [("slow", 60), ("fake-256", 256)])
@pytest.mark.parametrize("background", [True, False], ids=["background", "foreground"])
def test_resume_after_disconnect_is_gapless_and_identical_to_replay(
    server: TetherProcess, client: openai.OpenAI, model: str, tokens: int, background: bool
) -> None:
    body = {"model": model, "input": "hi", "stream": True, "background": background}
    first = SSE.post(server, body)
    head = first.read(6)
    first.close()
    assert [f.seq for f in head] == list(range(6))
    response_id = head[0].payload["response"]["id"]
    time.sleep(0.3)  # the generation runs on with nobody reading

    rest = SSE.get(server, response_id, starting_after=5).read_all()
    joined = head + rest
    assert_gapless(joined)
    assert joined[-1].event == "response.completed"

    replay = SSE.get(server, response_id).read_all()
    assert wire(joined) == wire(replay)
    assert joined[-1].payload["response"]["output"][0]["content"][0]["text"] == lorem(tokens)
    final = wait_terminal(client, response_id)
    assert final.status == "completed"
    assert final.output_text == lorem(tokens)


def test_resume_after_completion_replays_suffix_and_closes(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    response = client.responses.create(model="fake", input="hi")
    replay = SSE.get(server, response.id).read_all()
    assert_gapless(replay)

    suffix = SSE.get(server, response.id, starting_after=4).read_all()
    assert wire(suffix) == wire(replay[5:])


def test_resume_at_last_sequence_number_of_finished_response_is_empty(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    response = client.responses.create(model="fake", input="hi")
    last = SSE.get(server, response.id).read_all()[-1].seq

    answer = httpx.get(
        f"{server.base_url}/responses/{response.id}",
        params={"stream": "true", "starting_after": str(last)},
        timeout=READ_TIMEOUT,
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.content == b"data: [DONE]\n\n"


# --- the official SDK ------------------------------------------------------------


def sdk_events(stream: openai.Stream[Any]) -> list[Any]:
    """Every event of an SDK stream; a watchdog closes it if it runs too long."""
    watchdog = threading.Timer(STREAM_DEADLINE, stream.close)
    watchdog.start()
    try:
        with stream:
            events = list(stream)
    finally:
        watchdog.cancel()
    assert events and events[-1].type in TERMINAL, "stream cut short (watchdog?)"
    return events


def test_resume_with_sdk_starting_after_yields_later_events_with_original_numbers(
    client: openai.OpenAI,
) -> None:
    created = client.responses.create(model="slow", input="hi", background=True)

    resumed = sdk_events(client.responses.retrieve(created.id, stream=True, starting_after=2))
    numbers = [event.sequence_number for event in resumed]
    assert numbers == list(range(3, 3 + len(numbers)))
    assert resumed[-1].type == "response.completed"
    assert "response.created" not in [event.type for event in resumed]

    full = sdk_events(client.responses.retrieve(created.id, stream=True))
    assert full[0].type == "response.created"
    assert [event.sequence_number for event in full] == list(range(len(full)))
    assert [event.model_dump() for event in full[3:]] == [event.model_dump() for event in resumed]
    assert full[-1].response.output_text == lorem(60)


# --- many readers, and disconnects -----------------------------------------------


def test_resume_concurrent_readers_receive_identical_streams(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    created = client.responses.create(model="slow", input="hi", background=True)

    def read(delay: float) -> list[Frame]:
        time.sleep(delay)
        return SSE.get(server, created.id).read_all()

    with ThreadPoolExecutor(max_workers=5) as pool:
        streams = list(pool.map(read, [0.0, 0.2, 0.4, 0.6, 0.8]))

    assert_gapless(streams[0])
    assert streams[0][-1].event == "response.completed"
    for other in streams[1:]:
        assert wire(other) == wire(streams[0])


def test_resume_stored_stream_disconnect_does_not_stop_generation(
    client: openai.OpenAI,
) -> None:
    stream = client.responses.create(model="slow", input="hi", stream=True, store=True)
    with stream:
        created = next(iter(stream))
        assert created.type == "response.created"
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    response_id = created.response.id

    final = wait_terminal(client, response_id)
    assert final.status == "completed"
    assert final.output_text == lorem(60)


def _abandon_unstored_stream(server: TetherProcess) -> str:
    """Start a `store=false` stream on `very-slow`, read until text flows, hang up."""
    reader = SSE.post(server, {"model": "very-slow", "input": "hi", "stream": True, "store": False})
    frames = reader.read_until("response.output_text.delta", times=2)
    reader.close()
    response_id: str = frames[0].payload["response"]["id"]
    return response_id


def test_resume_unstored_stream_disconnect_cancels_generation(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    response_id = _abandon_unstored_stream(server)

    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response_id)
    answer = httpx.get(
        f"{server.base_url}/responses/{response_id}?stream=true", timeout=READ_TIMEOUT
    )
    assert answer.status_code == 404
    # The server goes on answering (nothing got stuck behind the abandoned response).
    response = client.with_options(timeout=10).responses.create(model="fake", input="hi")
    assert response.status == "completed"


def test_resume_unstored_stream_disconnect_frees_the_only_worker_slot(make_server: Any) -> None:
    """With one worker slot, a later response can only run if the abandoned one stopped
    (`very-slow` would hold the slot for 20 s)."""
    private = make_server(TETHER_WORKER_CONCURRENCY="1")
    _abandon_unstored_stream(private)

    client = openai.OpenAI(base_url=private.base_url, api_key="test", max_retries=0, timeout=8)
    response = client.responses.create(model="fake", input="hi")
    assert response.status == "completed"


# --- errors before any stream ----------------------------------------------------


def test_resume_unknown_response_is_404_json_before_any_stream(server: TetherProcess) -> None:
    answer = httpx.get(
        f"{server.base_url}/responses/resp_doesnotexist?stream=true", timeout=READ_TIMEOUT
    )
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "resp_doesnotexist" in error["message"]


@pytest.mark.parametrize("cursor", ["-1", "abc"])
def test_resume_bad_starting_after_is_400(
    server: TetherProcess, client: openai.OpenAI, cursor: str
) -> None:
    response = client.responses.create(model="fake", input="hi")
    answer = httpx.get(
        f"{server.base_url}/responses/{response.id}",
        params={"stream": "true", "starting_after": cursor},
        timeout=READ_TIMEOUT,
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == "starting_after"
    assert error["type"] == "invalid_request_error"
