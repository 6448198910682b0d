"""A batch of events as stored and published: their SSE frames, concatenated."""

from __future__ import annotations

from tether.domain import events as ev

_TYPES: dict[bytes, str] = {}


def event(seq: int, frame: bytes) -> ev.StoredEvent:
    """The stored event of one whole frame (`event: <type>\\ndata: …\\n\\n`)."""
    name = frame[7 : frame.index(b"\n")]  # after b"event: "
    event_type = _TYPES.get(name)
    if event_type is None:
        event_type = _TYPES[name] = name.decode()
    return ev.StoredEvent(seq, event_type, frame)


def split(first: int, count: int, frames: bytes, after: int = -1) -> list[ev.StoredEvent]:
    """The events `first … first+count-1` of a batch, leaving out those up to `after`."""
    if count == 1:
        return [event(first, frames)] if first > after else []
    # Frames end with a blank line and their JSON never holds a raw newline.
    return [
        event(first + offset, frame + b"\n\n")
        for offset, frame in enumerate(frames.split(b"\n\n")[:-1])
        if first + offset > after
    ]
