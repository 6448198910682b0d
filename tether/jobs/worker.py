"""The worker: claims jobs, runs them concurrently (bounded), keeps their leases,
and sweeps jobs whose worker is gone.

Sections: owners · the worker · sweeping.

A job's lease is renewed every third of `lease_seconds`. The sweeper, which runs
in every worker at start-up and then every `sweep_seconds` (safe to run in many at
once: hand-backs are compare-and-set), hands back every claimed job whose lease ran
out or whose owner process is known to be dead (same host, pid gone, or the same pid
in a new incarnation). The next claim runs it as a new attempt: the runner continues
the response where its log stops (see `Runner`), or ends it with `error` +
`response.failed` when the model cannot continue. A job claimed more than
`job_attempts` times fails — a response is never left stuck `in_progress`.

A job ended elsewhere (a cancel or delete on any replica) is revoked through the
backend (`JobQueue.watch_revoked`), which stops its runner here at once. On
shutdown the worker stops claiming, gives running jobs a grace period, then hands
the rest back for another worker (or this one, restarted) to continue.

When the store fails under a runner (unreachable past `store_outage_seconds`, a full
disk), the response is ended `failed` with the storage error. When even that cannot
be written, the response is `abandoned` here: this process's streams of it end with
that error (`why_abandoned`), and its job, still leased to us, is handed on by the
sweeper once its lease runs out and the store takes writes again.

Every sweep also applies retention (`expire`): responses finished more than
`retention_responses_seconds` ago are deleted, and the event logs of those finished
more than `retention_event_logs_seconds` ago are dropped (the backends make this
safe on many workers at once), a bounded number of batches per sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from tether.domain import events as ev
from tether.domain.response import ResponseStatus
from tether.errors import StorageError
from tether.jobs.runner import (
    Runner,
    request_from_payload,
    start_from_payload,
)
from tether.providers.base import GenerationRequest
from tether.providers.registry import ProviderRegistry
from tether.settings import Settings
from tether.storage.base import ClaimedJob, Job, Storage, StoredResponse

logger = logging.getLogger("tether.worker")

SHUTDOWN_MESSAGE = "The server shut down before this response finished. Retry the request."
POLL_SECONDS = 1.0  # fallback claim poll when no in-process wake-up arrives
RETENTION_BATCH = 500  # responses one `ResponseStore.expire` call handles at most
RETENTION_BATCHES = 20  # calls per sweep at most: a larger backlog takes a few sweeps
UNSTORED_LIMIT = 4096  # abandoned responses remembered (for their streams' last word)


# --- owners -------------------------------------------------------------------


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str, me: str) -> bool:
    """Whether `owner` (host:pid:nonce) is a process on this host that is gone."""
    host, _, rest = owner.partition(":")
    pid_text, _, _nonce = rest.partition(":")
    my_host, _, my_rest = me.partition(":")
    if host != my_host or owner == me:
        return False
    if pid_text == my_rest.partition(":")[0]:
        return True  # our pid, another nonce: an earlier incarnation (e.g. a restarted container)
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


async def _started(storage: Storage, response_id: str) -> bool:
    """Whether an earlier attempt emitted `response.in_progress` (it comes within the
    first three events: created, [queued], in_progress)."""
    first = await storage.events.read_after(response_id, -1, 3)
    return any(event.type == ev.IN_PROGRESS for event in first)


# --- the worker ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """Which response a run generates, and its attempt number (a job without its payload)."""

    response_id: str
    attempt: int


class Worker:
    """Runs the jobs of one or more storages in this process."""

    def __init__(
        self, storages: Sequence[Storage], providers: ProviderRegistry, settings: Settings
    ) -> None:
        self.owner = new_owner()
        self._storages = list(storages)
        self._providers = providers
        self._settings = settings
        self._running: dict[str, tuple[Storage, asyncio.Task[None]]] = {}
        self._slot_freed = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        # Responses whose runner stopped because the store failed and whose failure could
        # not be stored either: why (for the streams of this process).
        self._unstored: OrderedDict[str, str] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"<Worker owner={self.owner} running={len(self._running)}/"
            f"{self._settings.worker_concurrency} storages={[s.name for s in self._storages]}>"
        )

    @property
    def running(self) -> int:
        return len(self._running)

    async def start(self) -> None:
        for storage in self._storages:
            storage.jobs.watch_revoked(self._revoked)
            await self.sweep(storage)
            self._loops.append(asyncio.create_task(self._claim_loop(storage)))
            self._loops.append(asyncio.create_task(self._sweep_loop(storage)))
        self._loops.append(asyncio.create_task(self._renew_loop()))

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop claiming; give running jobs `grace_seconds`, then hand the rest back."""
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops.clear()
        if self._running:
            tasks = [task for _, task in self._running.values()]
            await asyncio.wait(tasks, timeout=grace_seconds)
        for response_id, (storage, task) in list(self._running.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if storage.name == "memory":
                # store=false responses live in this process only: nobody can take them on.
                await storage.responses.terminate(
                    response_id,
                    ResponseStatus.FAILED,
                    {"code": "server_error", "message": SHUTDOWN_MESSAGE},
                )
            elif await storage.jobs.requeue(response_id, self.owner):
                logger.info("handed back %s for another worker to continue", response_id)

    def why_abandoned(self, response_id: str) -> str | None:
        """Why this worker stopped generating `response_id` without storing its end (the
        store failed, then failed again), or None."""
        return self._unstored.get(response_id)

    def _revoked(self, response_id: str) -> None:
        if self.interrupt(response_id):
            logger.debug("job %s was revoked (cancelled or deleted); runner stopped", response_id)

    def interrupt(self, response_id: str) -> bool:
        """Stop generating `response_id` here (after a cancel or delete)."""
        entry = self._running.get(response_id)
        if entry is None:
            return False
        entry[1].cancel()
        return True

    async def _claim_loop(self, storage: Storage) -> None:
        settings = self._settings
        while True:
            free = settings.worker_concurrency - len(self._running)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                jobs = await storage.jobs.claim(self.owner, free, settings.lease_seconds)
            except StorageError as exc:
                logger.warning("claiming jobs from %s failed: %s", storage.name, exc)
                await asyncio.sleep(POLL_SECONDS)
                continue
            except Exception:
                logger.exception("claiming jobs from %s failed", storage.name)
                await asyncio.sleep(POLL_SECONDS)
                continue
            for job in jobs:
                self._start(storage, job)
            if not jobs:
                await storage.jobs.wait_for_jobs(POLL_SECONDS)

    def _start(self, storage: Storage, job: Job) -> None:
        self._unstored.pop(job.response_id, None)  # a new attempt takes it up
        response_id = job.response_id
        task = asyncio.create_task(self._attempt(storage, job), name=f"runner-{response_id}")
        self._running[response_id] = (storage, task)
        task.add_done_callback(lambda _: self._finished(response_id))

    def _finished(self, response_id: str) -> None:
        self._running.pop(response_id, None)
        self._slot_freed.set()

    async def _attempt(self, storage: Storage, job: Job) -> None:
        # The payload (the whole request, as JSON) is parsed here and not kept: a
        # long-running response holds only what its runner needs.
        response_id, attempt = job.response_id, job.attempt
        request = request_from_payload(job.payload)
        start = start_from_payload(response_id, job.payload) if attempt == 1 else None
        del job
        try:
            await self._run(storage, Attempt(response_id, attempt), request, start)
        except StorageError as exc:
            logger.warning(
                "could not run %s: the store failed (%s); its job is handed on once its "
                "lease runs out",
                response_id,
                exc,
            )

    async def _run(
        self,
        storage: Storage,
        job: Attempt,
        request: GenerationRequest,
        stored: StoredResponse | None,
    ) -> None:
        if stored is None:
            stored = await storage.responses.get(job.response_id)
        if stored is None or stored.status.terminal:
            return  # deleted or cancelled while queued; nothing to generate
        if job.attempt > self._settings.job_attempts:
            await storage.responses.terminate(
                job.response_id,
                ResponseStatus.FAILED,
                {
                    "code": "server_error",
                    "message": f"The workers generating this response stopped {job.attempt - 1} "
                    "times before it finished (crashed or killed), so Tether gave up on it. "
                    "Retry the request.",
                },
            )
            return
        started = job.attempt > 1 and await _started(storage, job.response_id)
        if request.model not in self._providers:
            await storage.responses.terminate(
                job.response_id,
                ResponseStatus.FAILED,
                {
                    "code": "server_error",
                    "message": f"Model '{request.model}' is not served "
                    "by this worker; check the worker's models configuration.",
                },
            )
            return
        provider = self._providers.get(request.model)
        runner = Runner(
            storage.events,
            provider,
            stored,
            request,
            started=started,
            max_seconds=self._settings.max_generation_seconds,
            outage_seconds=self._settings.store_outage_seconds,
        )
        del stored  # the runner folded it
        try:
            await runner.run()
        except Exception as exc:  # the log failed under the runner: end the response clearly
            await self._end_unstored(storage, job.response_id, exc)

    async def _end_unstored(self, storage: Storage, response_id: str, exc: Exception) -> None:
        """The store failed under the runner of `response_id`: end it `failed` with that
        error or, when even that cannot be written, abandon it (see the module doc)."""
        if isinstance(exc, StorageError):
            logger.error("runner for %s stopped: the store failed: %s", response_id, exc)
        else:
            logger.exception("runner for %s stopped without a terminal event", response_id)
        message = f"Tether could not store this response: {str(exc).rstrip('.')}"
        try:
            await storage.responses.terminate(
                response_id, ResponseStatus.FAILED, {"code": "server_error", "message": message}
            )
        except StorageError as again:
            logger.error(
                "could not store the failure of %s either (%s); it stays in progress until "
                "the store takes writes again, then its job is handed on",
                response_id,
                again,
            )
            self._unstored[response_id] = (
                f"{message}. Its failure could not be stored either; once the store works "
                "again the response is continued or failed: resume its stream then."
            )
            if len(self._unstored) > UNSTORED_LIMIT:
                self._unstored.popitem(last=False)

    async def _renew_loop(self) -> None:
        interval = self._settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            for storage in self._storages:
                mine = [rid for rid, (s, _) in self._running.items() if s is storage]
                if not mine:
                    continue
                try:
                    held = await storage.jobs.renew(self.owner, mine, self._settings.lease_seconds)
                except StorageError as exc:
                    logger.warning("renewing leases on %s failed: %s", storage.name, exc)
                    continue
                except Exception:
                    logger.exception("renewing leases on %s failed", storage.name)
                    continue
                for response_id in set(mine) - held:
                    logger.warning("lost the lease of %s; stopping its runner", response_id)
                    self.interrupt(response_id)

    # --- sweeping -------------------------------------------------------------

    async def _sweep_loop(self, storage: Storage) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_seconds)
            try:
                await self.sweep(storage)
            except StorageError as exc:
                logger.warning("sweeping %s failed: %s", storage.name, exc)
            except Exception:
                logger.exception("sweeping %s failed", storage.name)
            try:
                await self.expire(storage)
            except StorageError as exc:
                logger.warning("expiring old responses in %s failed: %s", storage.name, exc)
            except Exception:
                logger.exception("expiring old responses in %s failed", storage.name)

    async def sweep(self, storage: Storage) -> list[str]:
        """Hand back every claimed job whose lease ran out or whose owner is dead."""
        now = time.time()
        swept: list[str] = []
        for job in await storage.jobs.claimed():
            if self._abandoned(job, now) and await storage.jobs.requeue(job.response_id, job.owner):
                logger.warning(
                    "job %s of %s was abandoned by %s; handed on",
                    job.response_id,
                    storage.name,
                    job.owner,
                )
                swept.append(job.response_id)
        return swept

    async def expire(self, storage: Storage) -> int:
        """Delete the responses and drop the event logs whose retention ran out."""
        settings = self._settings
        now = time.time()
        responses_before = now - settings.retention_responses_seconds
        events_before = now - (
            settings.retention_event_logs_seconds or settings.retention_responses_seconds
        )
        total = 0
        for _ in range(RETENTION_BATCHES):
            done = await storage.responses.expire(responses_before, events_before, RETENTION_BATCH)
            total += done
            if done == 0:
                break
        if total:
            logger.info("retention: expired %d responses or event logs in %s", total, storage.name)
        return total

    def _abandoned(self, job: ClaimedJob, now: float) -> bool:
        if job.response_id in self._running:
            return False
        # Ours but not running (its runner ended without a terminal event) ages out with
        # its lease like anyone else's; a dead owner's job is abandoned at once.
        return job.lease_until < now or owner_is_dead(job.owner, self.owner)
