"""Live streams under a storage fault, and the checks of what they got against what the
store kept.

A `LiveStream` is one response streamed through the official `openai` SDK on a thread
of its own, every event recorded as the SDK parsed it. An `error` frame makes the SDK
raise `APIError` with the frame's message: that is how a client learns that a stream
failed, so it is recorded as the stream's `error`. Anything else the client meets (a
broken body, a 500, a hang) is a defect of the server and fails the check.

`check_against_log` reads the response's whole stored log back (GET ?stream=true from
0) and holds every promise at once: sequence numbers 0..n without gap or repeat, one
terminal event and it is the last, and the live events a prefix of the log, equal to
it event for event — so no event was lost, duplicated or changed. It adds the response
and the events it lost to the suite's tally before it asserts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from tests.faults.conftest import Tally
from tests.support.server import TetherProcess
from tests.support.sse import SSE, TERMINAL, Frame

STREAM_SECONDS = 60.0  # a live stream that has not ended by then hangs: a failure


@dataclass
class LiveStream:
    """What one SDK client received: its events (as JSON), then how the stream ended."""

    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # the message of an `error` frame (the SDK raised it)
    broken: BaseException | None = None  # anything else: never expected
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def response_id(self) -> str:
        assert self.events, f"the stream ended before response.created: {self.broken!r}"
        response_id: str = self.events[0]["response"]["id"]
        return response_id

    def wait_events(self, count: int, seconds: float = 20.0) -> None:
        """Until the client holds `count` events (or the stream ended)."""
        deadline = time.monotonic() + seconds
        while len(self.events) < count and not self.finished.is_set():
            assert time.monotonic() < deadline, f"only {len(self.events)} events after {seconds} s"
            time.sleep(0.01)

    def join(self) -> None:
        assert self.finished.wait(STREAM_SECONDS), f"stream still open after {STREAM_SECONDS} s"
        assert self.broken is None, f"the client met a broken stream: {self.broken!r}"


def start_stream(client: openai.OpenAI, body: dict[str, Any]) -> LiveStream:
    """Stream `body` through the SDK on a thread; answers at once."""
    live = LiveStream()

    def run() -> None:
        try:
            with client.responses.create(**body, stream=True) as stream:
                for event in stream:
                    live.events.append(event.model_dump(mode="json", exclude_unset=True))
        except openai.APIStatusError as exc:  # an HTTP error before the stream
            live.broken = exc
        except openai.APIConnectionError as exc:  # a cut or hung connection
            live.broken = exc
        except openai.APIError as exc:  # an `error` frame in the stream
            live.error = exc.message
        except BaseException as exc:  # recorded: the test fails on it
            live.broken = exc
        finally:
            live.finished.set()

    threading.Thread(target=run, name="live-stream", daemon=True).start()
    return live


def generating(tether: TetherProcess, live: LiveStream, seconds: float = 20.0) -> int:
    """Until the server shows `live`'s response generating (a word of text stored), seen
    from the server, since a client may lag behind; answers how many words it has."""
    live.wait_events(1)
    deadline = time.monotonic() + seconds
    while True:
        snapshot = httpx.get(f"{tether.base_url}/responses/{live.response_id}", timeout=10).json()
        assert snapshot["status"] in ("queued", "in_progress"), snapshot["status"]
        output = snapshot["output"]
        text = output[0]["content"][0]["text"] if output and output[0]["content"] else ""
        if text:
            return len(text.split())
        assert time.monotonic() < deadline, f"not generating after {seconds} s"
        time.sleep(0.01)


def stored_log(tether: TetherProcess, response_id: str) -> list[Frame]:
    """The whole stored log of a finished response (GET ?stream=true from 0)."""
    return SSE.get(tether, response_id).read_all()


@dataclass(frozen=True)
class Checked:
    status: str  # the terminal status
    error: str | None  # the stored error message of a failed response
    events: int  # events in the stored log


def check_against_log(tether: TetherProcess, live: LiveStream, tally: Tally) -> Checked:
    """Check the stored log of `live`'s response, and `live` against it (see above).
    Counts the response and what it lost in `tally` before asserting."""
    frames = stored_log(tether, live.response_id)
    seqs = [frame.seq for frame in frames]
    stored = [frame.payload for frame in frames]
    missing = len(set(range(max(seqs, default=-1) + 1)) - set(seqs))
    differ = sum(a != b for a, b in zip(live.events, stored, strict=False))
    lost = missing + differ + max(0, len(live.events) - len(stored))
    tally.responses += 1
    tally.events_lost += lost
    assert seqs == list(range(len(frames))), f"gap or repeat in the stored log: {seqs}"
    assert lost == 0, "the live stream is not a prefix of the stored log"
    assert [frame.event in TERMINAL for frame in frames].count(True) == 1
    assert frames[-1].event in TERMINAL, frames[-1].event
    final: dict[str, Any] = stored[-1]["response"]
    snapshot = httpx.get(f"{tether.base_url}/responses/{final['id']}", timeout=10).json()
    assert snapshot == final, "the stored snapshot differs from the terminal event's"
    error = final["error"]["message"] if final.get("error") else None
    if live.error is None:  # the client saw the end: the whole log
        assert live.events == stored, "the client saw the end but not the whole log"
    elif len(live.events) + 2 == len(stored) and stored[-2]["type"] == "error":
        assert live.error == error  # the stored failure, as the SDK raised it
    return Checked(final["status"], error, len(stored))
