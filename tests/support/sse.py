"""Reading SSE streams on the wire in tests: raw httpx, frames parsed here, every read
bounded by a deadline so a bug fails a test instead of hanging it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai

from tests.support.server import TetherProcess

READ_TIMEOUT = 5.0  # one socket read
STREAM_DEADLINE = 15.0  # one whole stream
TERMINAL = {"response.completed", "response.incomplete", "response.failed", "response.cancelled"}
LOREM = [
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "ut",
    "enim", "ad", "minim", "veniam", "quis", "nostrud",
]  # fmt: skip


def lorem(tokens: int) -> str:
    """The text the fake model writes with `output_tokens = tokens` (lorem mode)."""
    return " ".join(LOREM[i % len(LOREM)] for i in range(tokens))


# --- a raw SSE reader ------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    event: str
    data: bytes  # the `data:` line's payload, as sent

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.data)
        return result

    @property
    def seq(self) -> int:
        return int(self.payload["sequence_number"])


class SSE:
    """One SSE response read frame by frame over its own connection."""

    def __init__(self, method: str, url: str, body: dict[str, Any] | None = None) -> None:
        self._client = httpx.Client(timeout=READ_TIMEOUT)
        request = self._client.build_request(method, url, json=body)
        self.response = self._client.send(request, stream=True)
        self._chunks: Iterator[bytes] = self.response.iter_bytes()
        self._buffer = b""
        self._deadline = time.monotonic() + STREAM_DEADLINE
        self.done = False  # saw `data: [DONE]`

    @classmethod
    def post(cls, server: TetherProcess, body: dict[str, Any]) -> SSE:
        return cls.ok(cls("POST", f"{server.base_url}/responses", body))

    @classmethod
    def get(cls, server: TetherProcess, response_id: str, starting_after: int | None = None) -> SSE:
        cursor = "" if starting_after is None else f"&starting_after={starting_after}"
        return cls.ok(cls("GET", f"{server.base_url}/responses/{response_id}?stream=true{cursor}"))

    @staticmethod
    def ok(stream: SSE) -> SSE:
        assert stream.response.status_code == 200, stream.response.read()
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        return stream

    def _block(self) -> bytes | None:
        """The next blank-line-terminated block, or None at the end of the body."""
        while b"\n\n" not in self._buffer:
            assert time.monotonic() < self._deadline, "stream did not end in time"
            chunk = next(self._chunks, None)
            if chunk is None:
                assert not self._buffer, f"body ended inside a frame: {self._buffer!r}"
                return None
            self._buffer += chunk
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        return block

    def next_frame(self) -> Frame | None:
        """The next event frame; None after `[DONE]` or at the end of the body."""
        while not self.done:
            block = self._block()
            if block is None:
                return None
            lines = block.split(b"\n")
            if all(line.startswith(b":") for line in lines):
                continue  # a keepalive comment
            if lines == [b"data: [DONE]"]:
                self.done = True
                return None
            assert len(lines) == 2, f"bad frame {block!r}"
            assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), block
            frame = Frame(lines[0][7:].decode(), lines[1][6:])
            assert frame.payload["type"] == frame.event
            return frame
        return None

    def read(self, count: int) -> list[Frame]:
        frames: list[Frame] = []
        for _ in range(count):
            frame = self.next_frame()
            assert frame is not None, f"stream ended after {len(frames)} of {count} frames"
            frames.append(frame)
        return frames

    def read_until(self, event: str, times: int = 1) -> list[Frame]:
        frames: list[Frame] = []
        while sum(f.event == event for f in frames) < times:
            frame = self.next_frame()
            assert frame is not None, f"stream ended before {times} x {event}"
            frames.append(frame)
        return frames

    def read_all(self) -> list[Frame]:
        """Every remaining frame; the stream must then end with `[DONE]` and close."""
        frames: list[Frame] = []
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
        assert self.done, "stream closed without data: [DONE]"
        assert self._block() is None, "data after [DONE]"
        self.close()
        return frames

    def close(self) -> None:
        self.response.close()
        self._client.close()


def assert_gapless(frames: list[Frame], first: int = 0) -> None:
    """Numbers first, first+1, …; exactly one terminal event, the last one."""
    assert [f.seq for f in frames] == list(range(first, first + len(frames)))
    assert [f.event in TERMINAL for f in frames].count(True) == 1
    assert frames[-1].event in TERMINAL


def wire(frames: list[Frame]) -> list[tuple[str, bytes]]:
    return [(f.event, f.data) for f in frames]


def wait_terminal(client: openai.OpenAI, response_id: str, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return response
        assert time.monotonic() < deadline, f"{response_id} still {response.status}"
        time.sleep(0.05)


# --- resume after a disconnect ---------------------------------------------------
