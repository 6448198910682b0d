"""Scheduling for in-process models: a pool of instances, each with its own thread,
handed out first come, first served.

A `Slot` is one model instance (loaded on first use) and the one thread that runs
its generations, so token generation never blocks the event loop and two requests
never share an instance. `SlotPool.acquire` gives a free slot or waits in a FIFO
queue; a waiter that is cancelled leaves the queue (and hands on a slot it was just
given). The caller gives the slot back with `release` once its thread has finished,
not merely when the caller stops listening.

An `Outbox` carries a generation's text from the slot's thread to the event loop,
waking the loop once per pile of pieces rather than once per token.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> None: ...


E = TypeVar("E", bound=Closable)


class Slot(Generic[E]):
    """One model instance and its thread. `engine()` loads the instance on first use
    (from any thread; one load at a time)."""

    def __init__(self, index: int, load: Callable[[], E]) -> None:
        self.index = index
        self._load = load
        self._engine: E | None = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"tether-llama-{index}")

    def __repr__(self) -> str:
        return f"<Slot {self.index} loaded={self._engine is not None}>"

    def engine(self) -> E:
        with self._lock:
            if self._engine is None:
                self._engine = self._load()
            return self._engine

    def submit(self, work: Callable[[E], object]) -> Future[object]:
        """Runs `work(engine)` on this slot's thread."""
        return self._executor.submit(lambda: work(self.engine()))

    def close(self) -> None:
        """Waits for the running work, then frees the instance (blocking)."""
        self._executor.shutdown(wait=True)
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None


class SlotPool(Generic[E]):
    """`size` slots, handed out in the order they were asked for."""

    def __init__(self, size: int, load: Callable[[], E]) -> None:
        self.slots = [Slot(index, load) for index in range(size)]
        self._free: deque[Slot[E]] = deque(self.slots)
        self._waiters: deque[asyncio.Future[Slot[E]]] = deque()

    def __repr__(self) -> str:
        busy = len(self.slots) - len(self._free)
        return f"<SlotPool slots={len(self.slots)} busy={busy} waiting={self.waiting}>"

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    @property
    def idle(self) -> bool:
        return len(self._free) == len(self.slots)

    async def acquire(self) -> Slot[E]:
        if self._free and not self.waiting:
            return self._free.popleft()
        waiter: asyncio.Future[Slot[E]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # given a slot just as it was cancelled
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self, slot: Slot[E]) -> None:
        """Gives `slot` to the longest waiter, or back to the free list (loop thread only)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._free.append(slot)

    async def aclose(self) -> None:
        for slot in self.slots:
            await asyncio.to_thread(slot.close)


class Outbox:
    """Text from a generating thread to the event loop. The thread `put`s each piece;
    the loop `take`s all that has piled up as one string, so the loop is woken once per
    pile rather than once per piece. `finish` (loop side) marks the end."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._pieces: list[str] = []
        self._end: Future[object] | None = None
        self._ready = asyncio.Event()
        self._woken = False

    def __repr__(self) -> str:
        return f"<Outbox pieces={len(self._pieces)} ended={self._end is not None}>"

    def put(self, text: str) -> bool:
        """Thread side. False when the loop is gone (nobody will take the text)."""
        with self._lock:
            self._pieces.append(text)
            if self._woken:
                return True
            self._woken = True
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:
            return False
        return True

    def finish(self, end: Future[object]) -> None:
        """Loop side: the generation is over; `end` holds its result."""
        self._end = end
        self._ready.set()

    async def take(self) -> tuple[str, Future[object] | None]:
        """The text put since the last take, and the end once the generation is over
        (all its text is then in this take or an earlier one)."""
        await self._ready.wait()
        with self._lock:
            text = "".join(self._pieces)
            self._pieces.clear()
            self._woken = False
            self._ready.clear()
            end = self._end
        return text, end
