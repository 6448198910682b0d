"""`EventWindow`: the latest committed events of one response, kept in memory so the
tails of this process read them without a query (every backend keeps one per active
or followed response)."""

from __future__ import annotations

from collections.abc import Sequence

from tether.domain import events as ev

WINDOW_LIMIT = 2048  # events kept per response; past it the older half goes


class EventWindow:
    """Contiguous committed events, from `first_seq` on."""

    __slots__ = ("events", "first_seq")

    def __init__(self, events: list[ev.StoredEvent]) -> None:
        self.events = events
        self.first_seq = events[0].seq

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.events)

    def add(self, events: Sequence[ev.StoredEvent]) -> EventWindow:
        """Take a committed batch: the window to keep from now on. A batch already here
        is skipped; one past a gap starts a new window."""
        next_seq = self.next_seq
        if events[0].seq != next_seq:
            return self if events[-1].seq < next_seq else EventWindow(list(events))
        self.events.extend(events)
        if len(self.events) > WINDOW_LIMIT:
            del self.events[: len(self.events) - WINDOW_LIMIT // 2]
            self.first_seq = self.events[0].seq
        return self

    def after(self, after: int, limit: int) -> list[ev.StoredEvent] | None:
        """Up to `limit` events past `after` (empty at the head), or None when the
        window does not reach back to `after + 1`."""
        start = after + 1 - self.first_seq
        if start < 0:
            return None
        return self.events[start : start + limit]
