"""In-process wake-ups for tailers: the last committed sequence number per response.

Backends call `published` after a commit becomes visible; `wait` returns as soon
as an event past the caller's cursor is known to be committed. Entries of finished
responses are forgotten after a grace period, so a reader that raced the terminal
commit still wakes at once.
"""

from __future__ import annotations

import asyncio

FORGET_AFTER_SECONDS = 30.0
GONE = 1 << 62  # published for a deleted response: wakes every waiter


class Notifier:
    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def __repr__(self) -> str:
        return f"<Notifier responses={len(self._last)} waiting={len(self._waiters)}>"

    def knows(self, response_id: str) -> bool:
        return response_id in self._last

    def published(self, response_id: str, last_seq: int, *, finished: bool = False) -> None:
        self._last[response_id] = last_seq
        waiters = self._waiters.pop(response_id, None)
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if finished:
            asyncio.get_running_loop().call_later(
                FORGET_AFTER_SECONDS, self._last.pop, response_id, None
            )

    async def wait(self, response_id: str, after: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._last.get(response_id, -1) <= after:
            if loop.time() >= deadline:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(response_id, []).append(waiter)
            # A bare timer handle on a plain future: cancellation propagates as usual (no
            # wait_for, which can swallow one on 3.11), and it costs less than a timeout
            # context on this per-event path.
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._discard(response_id, waiter)
        return True

    def _discard(self, response_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(response_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[response_id]


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class JobSignal:
    """Wakes the worker's claim loop when a job was enqueued in this process."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return
        self._event.clear()
