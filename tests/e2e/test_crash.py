"""Crash tests: SIGKILL a real `tether serve` mid-generation, start it again on the
same SQLite file, and check guarantees 1 and 2 of DESIGN.md.

After the restart every response is retrievable, and one that was generating never
stays `in_progress`: with a model that can continue (the fake), the new worker goes
on inside the open message and the text equals the uninterrupted answer; with one
that cannot, it ends `failed` (`server_error`, "the worker … stopped"). Either way
its log replays gaplessly from 0 and starts with the very bytes clients saw before
the crash.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.frames import FrameReader, event_of
from tests.support.server import TetherProcess, models_toml
from tether.providers.fake import LOREM

pytestmark = pytest.mark.slow

MakeServer = Callable[..., TetherProcess]
TIMEOUT = httpx.Timeout(10.0)
TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset({f"response.{status}" for status in TERMINAL})
SETTLE_SECONDS = 10.0  # how long a response may take to reach a terminal state after restart

# A model that is slow to start, like `stalled`, but finishes soon if it runs after restart.
# `steady` continues after a crash; `steady-final` is the same model unable to.
CRASH_MODELS = """
[[models]]
name = "slow-start"
provider = "fake"
output_tokens = 5
first_token_delay_ms = 1500

[[models]]
name = "steady"
provider = "fake"
output_tokens = 60
tokens_per_second = 20

[[models]]
name = "steady-final"
provider = "fake"
output_tokens = 60
tokens_per_second = 20
continuation = false
"""
STEADY_TEXT = " ".join(LOREM[i % len(LOREM)] for i in range(60))


@pytest.fixture
def crash_server(make_server: MakeServer, mock_chat_url: str) -> TetherProcess:
    return make_server(models_toml(mock_chat_url) + CRASH_MODELS)


def replay(server: TetherProcess, response_id: str, after: int | None = None) -> FrameReader:
    """The whole stored log after `after` (a terminal response's stream ends by itself)."""
    params = {"stream": "true"}
    if after is not None:
        params["starting_after"] = str(after)
    url = f"{server.base_url}/responses/{response_id}"
    with httpx.stream("GET", url, params=params, timeout=TIMEOUT) as response:
        assert response.status_code == 200, response.read()
        reader = FrameReader(response)
        reader.read()
    return reader


def read_some(server: TetherProcess, response_id: str, count: int) -> list[bytes]:
    """The first `count` (or a few more) frames of a response's stream; waits for them."""
    url = f"{server.base_url}/responses/{response_id}"
    with httpx.stream("GET", url, params={"stream": "true"}, timeout=TIMEOUT) as response:
        assert response.status_code == 200, response.read()
        return FrameReader(response).read(count)


# --- reading responses ------------------------------------------------------------------------


def get(server: TetherProcess, path: str) -> httpx.Response:
    response = httpx.get(f"{server.base_url}{path}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response


def post(server: TetherProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.base_url}/responses", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_terminal(server: TetherProcess, response_id: str, seconds: float) -> dict[str, Any]:
    """Poll the snapshot until it is terminal; fail (not hang) if it never gets there."""
    deadline = time.monotonic() + seconds
    while True:
        snapshot: dict[str, Any] = get(server, f"/responses/{response_id}").json()
        if snapshot["status"] in TERMINAL:
            return snapshot
        if time.monotonic() > deadline:
            pytest.fail(f"{response_id} is still {snapshot['status']} {seconds} s after restart")
        time.sleep(0.1)


def text_part(text: str) -> dict[str, str]:
    return {"type": "input_text", "text": text}


def output_text(snapshot: dict[str, Any]) -> str:
    return "".join(part["text"] for item in snapshot["output"] for part in item["content"])


def assert_gapless_to_one_terminal(events: list[dict[str, Any]]) -> None:
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert [e["type"] in TERMINAL_EVENTS for e in events].count(True) == 1
    assert events[-1]["type"] in TERMINAL_EVENTS


def assert_failed_by_crash(
    server: TetherProcess, response_id: str, seen: list[bytes]
) -> list[bytes]:
    """After restart: `response_id` ends failed by the lost worker, its log replays
    gaplessly, starts with the `seen` frames byte for byte, and ends error + failed."""
    snapshot = wait_terminal(server, response_id, SETTLE_SECONDS)
    assert snapshot["status"] == "failed", snapshot
    assert snapshot["error"]["code"] == "server_error"
    message = snapshot["error"]["message"]
    assert "worker" in message and "stopped" in message, message

    full = replay(server, response_id)
    assert full.done
    events = [event_of(frame) for frame in full.frames]
    assert_gapless_to_one_terminal(events)
    assert full.frames[: len(seen)] == seen
    assert len(full.frames) >= len(seen) + 2
    error, failed = events[-2], events[-1]
    assert error["type"] == "error"
    assert error["code"] == "server_error"
    assert error["message"] == message
    assert error["error"]["code"] == "server_error"
    assert failed["type"] == "response.failed"
    assert failed["response"] == snapshot

    # The partial output survives: the snapshot holds every delta of the log.
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas
    assert output_text(snapshot) == deltas

    # Resumable from where the client was.
    resumed = replay(server, response_id, after=len(seen) - 1)
    assert resumed.frames == full.frames[len(seen) :]
    return full.frames


def assert_continued(server: TetherProcess, response_id: str, seen: list[bytes]) -> None:
    """After restart: `response_id` completes with the uninterrupted text, its log is
    gapless with one `in_progress`, and starts with the `seen` frames byte for byte."""
    snapshot = wait_terminal(server, response_id, SETTLE_SECONDS)
    assert snapshot["status"] == "completed", snapshot
    assert output_text(snapshot) == STEADY_TEXT
    full = replay(server, response_id)
    assert full.done
    events = [event_of(frame) for frame in full.frames]
    assert_gapless_to_one_terminal(events)
    assert full.frames[: len(seen)] == seen
    assert [e["type"] for e in events].count("response.in_progress") == 1
    assert [e["type"] for e in events].count("response.output_item.added") == 1
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == STEADY_TEXT
    resumed = replay(server, response_id, after=len(seen) - 1)
    assert resumed.frames == full.frames[len(seen) :]


# --- tests --------------------------------------------------------------------------------------


def test_crash_continues_interrupted_responses_and_keeps_their_logs(
    crash_server: TetherProcess,
) -> None:
    server = crash_server
    done = post(server, {"model": "fake", "input": "finished before the crash"})
    assert done["status"] == "completed"
    done_snapshot = get(server, f"/responses/{done['id']}").content
    done_log = replay(server, done["id"]).frames

    background = post(server, {"model": "steady", "input": "background words", "background": True})
    with httpx.stream(
        "POST",
        f"{server.base_url}/responses",
        json={"model": "steady", "input": "streamed words", "background": True, "stream": True},
        timeout=TIMEOUT,
    ) as response:
        assert response.status_code == 200
        streamed_seen = FrameReader(response).read(10)
    streamed_id = event_of(streamed_seen[0])["response"]["id"]
    # Wait until the background one has produced text, recording what a reader saw.
    background_seen = read_some(server, background["id"], 12)
    assert any(b"response.output_text.delta" in frame for frame in background_seen)
    assert any(b"response.output_text.delta" in frame for frame in streamed_seen)

    items = {
        rid: get(server, f"/responses/{rid}/input_items").json()
        for rid in (done["id"], background["id"], streamed_id)
    }

    server.kill()
    server.start()

    for rid, before in items.items():
        assert get(server, f"/responses/{rid}/input_items").json() == before
    assert get(server, f"/responses/{done['id']}").content == done_snapshot
    assert replay(server, done["id"]).frames == done_log
    assert_continued(server, background["id"], background_seen)
    assert_continued(server, streamed_id, streamed_seen)


def test_crash_during_streamed_create_fails_a_response_its_model_cannot_continue(
    crash_server: TetherProcess,
) -> None:
    server = crash_server
    with httpx.stream(
        "POST",
        f"{server.base_url}/responses",
        json={"model": "steady-final", "input": "a plain stream", "stream": True},
        timeout=TIMEOUT,
    ) as response:
        assert response.status_code == 200
        reader = FrameReader(response)
        reader.read(10)
        server.kill()
        # The connection dies with the server (an error or a cut-off body, both fine).
        with contextlib.suppress(httpx.TransportError):
            reader.read()
    seen = reader.frames
    assert not reader.done
    assert not any(event_of(frame)["type"] in TERMINAL_EVENTS for frame in seen)
    response_id = event_of(seen[0])["response"]["id"]

    server.start()

    assert_failed_by_crash(server, response_id, seen)
    items = get(server, f"/responses/{response_id}/input_items").json()["data"]
    assert [item["content"] for item in items] == [[text_part("a plain stream")]]


def test_crash_right_after_background_create_never_leaves_it_stuck(
    crash_server: TetherProcess,
) -> None:
    server = crash_server
    created = post(server, {"model": "slow-start", "input": "started late", "background": True})
    assert created["status"] == "queued"
    server.kill()
    server.start()

    # Claimed before the kill or not: nothing was emitted, so it runs after restart.
    snapshot = wait_terminal(server, created["id"], SETTLE_SECONDS)
    assert snapshot["status"] == "completed", snapshot
    full = replay(server, created["id"])
    assert full.done
    events = [event_of(frame) for frame in full.frames]
    assert_gapless_to_one_terminal(events)
    assert [e["type"] for e in events[:2]] == ["response.created", "response.queued"]
    assert events[-1]["response"] == snapshot
    assert output_text(snapshot).split() == ["lorem", "ipsum", "dolor", "sit", "amet"]
    items = get(server, f"/responses/{created['id']}/input_items").json()["data"]
    assert [item["content"] for item in items] == [[text_part("started late")]]
