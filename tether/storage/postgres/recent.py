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
from tether.storage.window import EventWindow

WINDOWS_LIMIT = 20_000  # responses with a window; the oldest goes first
LINGER_SECONDS = 10.0  # how long a finished response's window stays


class RecentEvents:
    def __init__(self) -> None:
        self._windows: OrderedDict[str, EventWindow] = OrderedDict()

    def __repr__(self) -> str:
        return f"<RecentEvents responses={len(self._windows)}>"

    def add(self, response_id: str, events: Sequence[ev.StoredEvent]) -> None:
        """`events` were committed by this process (called on the loop, after COMMIT)."""
        window = self._windows.get(response_id)
        if window is None:
            self._windows[response_id] = EventWindow(list(events))
            if len(self._windows) > WINDOWS_LIMIT:
                self._windows.popitem(last=False)
        else:
            self._windows[response_id] = window.add(events)  # a gap starts a new one
        if events[-1].terminal:
            self.finished(response_id)

    def read(self, response_id: str, after: int, limit: int) -> list[ev.StoredEvent] | None:
        """The events past `after` when the window holds them from `after + 1` on and
        holds at least one; None: ask the table."""
        window = self._windows.get(response_id)
        events = None if window is None else window.after(after, limit)
        return events or None  # at the head: another process may have appended since

    def finished(self, response_id: str) -> None:
        if response_id in self._windows:
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self.drop, response_id)

    def drop(self, response_id: str) -> None:
        self._windows.pop(response_id, None)
