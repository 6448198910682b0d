"""Raw SSE frames as clients saw them, byte for byte (for replay and crash tests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson


class FrameReader:
    """Reads the event frames of an SSE body as raw bytes (`event: …\\ndata: …`), as far
    as asked; keepalive comments are skipped and `data: [DONE]` is noted."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks: Iterator[bytes] = response.iter_bytes()
        self._buffer = b""
        self.frames: list[bytes] = []
        self.done = False
        self.ended = False

    def read(self, count: int | None = None) -> list[bytes]:
        """Read until at least `count` frames (all of the body if None)."""
        while count is None or len(self.frames) < count:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.ended = True
                break
            self._buffer += chunk
            while b"\n\n" in self._buffer:
                frame, self._buffer = self._buffer.split(b"\n\n", 1)
                if frame.startswith(b":"):
                    continue
                if frame == b"data: [DONE]":
                    self.done = True
                    continue
                assert not self.done, f"a frame after [DONE]: {frame!r}"
                self.frames.append(frame)
        return self.frames


def event_of(frame: bytes) -> dict[str, Any]:
    name, data = frame.split(b"\n")
    assert name.startswith(b"event: ") and data.startswith(b"data: "), frame
    event: dict[str, Any] = orjson.loads(data[len(b"data: ") :])
    assert event["type"] == name[len(b"event: ") :].decode()
    return event
