"""The recent events this process appended, kept for the tails in this process.

Without it every wake-up of a tail was a query plus splitting the row's frames:
about a fifth of the process's CPU under load. A window holds only events this
process committed, contiguous, and answers only ranges it holds whole, so an event
appended by another process (a continuation after a crash) is never hidden: a read
past the window goes to the table. A window is dropped when its response is gone
(deleted or expired here, or a GONE notice), when an append's outcome is unknown or
refused, and a while after the response finished.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

from tether.domain import events as ev

WINDOW_LIMIT = 2048  # events kept per response
WINDOWS_LIMIT = 20_000  # responses with a window; the oldest goes first
LINGER_SECONDS = 10.0  # how long a finished response's window stays


class _Window:
    __slots__ = ("events", "first_seq")

    def __init__(self, events: list[ev.StoredEvent]) -> None:
        self.events = events
        self.first_seq = events[0].seq

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.events)


class RecentEvents:
    def __init__(self) -> None:
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __repr__(self) -> str:
        return f"<RecentEvents responses={len(self._windows)}>"

    def add(self, response_id: str, events: Sequence[ev.StoredEvent]) -> None:
        """`events` were committed by this process (called on the loop, after COMMIT)."""
        window = self._windows.get(response_id)
        if window is None or window.next_seq != events[0].seq:
            window = self._windows[response_id] = _Window(list(events))  # new, or after a gap
            if len(self._windows) > WINDOWS_LIMIT:
                self._windows.popitem(last=False)
        else:
            window.events.extend(events)
            if len(window.events) > WINDOW_LIMIT:
                del window.events[: len(window.events) - WINDOW_LIMIT // 2]
                window.first_seq = window.events[0].seq
        if events[-1].terminal:
            self.finished(response_id)

    def read(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent] | None:
        """The events past `after` when the window holds them from `after + 1` on and
        holds at least one; None: ask the table."""
        window = self._windows.get(response_id)
        if window is None or not window.first_seq <= after + 1 < window.next_seq:
            return None
        start = after + 1 - window.first_seq
        return window.events[start : start + limit]

    def finished(self, response_id: str) -> None:
        if response_id in self._windows:
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self.drop, response_id)

    def drop(self, response_id: str) -> None:
        self._windows.pop(response_id, None)
