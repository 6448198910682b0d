"""The SQLite file: the writer thread that group-commits, the reader pool, the
recent-event tail and the schema."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from tether.domain import events as ev
from tether.errors import (
    ConfigError,
    StorageError,
)
from tether.storage.notify import GONE, JobSignal, Notifier
from tether.storage.sqlite.rows import Heads
from tether.storage.window import EventWindow

T = TypeVar("T")

MIGRATIONS = [
    # Events live in an append-only rowid table, one row per append: the frames of
    # events first_seq..last_seq, concatenated as sent. Inserts go to the table's end
    # with one small index entry per batch, instead of scattering 200-byte rows over a
    # (response_id, seq) tree — measured 10.7 vs 45 µs per event with 600 trickling
    # streams, and far less again when a batch holds many events. `rid` is the
    # response row's integer id. The snapshot is the response as of event
    # `snapshot_seq`; readers fold the events after it.
    """
    CREATE TABLE responses (
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        snapshot BLOB NOT NULL,
        snapshot_seq INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE input_items (
        response_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        id TEXT NOT NULL,
        item BLOB NOT NULL,
        PRIMARY KEY (response_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX input_items_by_id ON input_items (response_id, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        rid INTEGER NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        frames BLOB NOT NULL
    );
    CREATE UNIQUE INDEX events_by_response ON events (rid, last_seq);
    CREATE TABLE jobs (
        response_id TEXT PRIMARY KEY,
        queued_at REAL NOT NULL,
        owner TEXT,
        lease_until REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        payload BLOB NOT NULL
    );
    CREATE INDEX jobs_unclaimed ON jobs (queued_at) WHERE owner IS NULL;
    """,
    # Conversations: their items are ordered by `position` (gaps where items were
    # deleted). AUTOINCREMENT so that a deleted conversation's `cid` is never given
    # to a new one: a response still running for the deleted conversation keeps its
    # `conversation_cid` and must find nothing to add its output to.
    """
    CREATE TABLE conversations (
        cid INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        metadata BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE conversation_items (
        cid INTEGER NOT NULL,
        position INTEGER NOT NULL,
        id TEXT NOT NULL,
        item BLOB NOT NULL,
        PRIMARY KEY (cid, position)
    ) WITHOUT ROWID;
    CREATE INDEX conversation_items_by_id ON conversation_items (cid, id);
    ALTER TABLE responses ADD COLUMN conversation_cid INTEGER;
    """,
    # Migration 3 — projects and API keys: every response and conversation belongs to
    # a project (rows written before belong to 'default'); keys are stored as the
    # SHA-256 of their secret (`apikeys.py`), found by their id.
    """
    ALTER TABLE responses ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE conversations ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        name TEXT,
        digest BLOB NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    ) WITHOUT ROWID;
    """,
    # Migration 4 — Idempotency-Key claims: (project, key) → the response created with
    # it and the hash of its request body, until `expires_at` (unix time). Written in
    # the response's own transaction; lapsed rows are removed by later claims.
    """
    CREATE TABLE idempotency_keys (
        project TEXT NOT NULL,
        key TEXT NOT NULL,
        response_id TEXT NOT NULL,
        body_hash BLOB NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (project, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
    """,
    # Migration 5 — retention (`retention.py`): a terminal response's `updated_at` is
    # when it finished (nothing updates it after). Candidates are found by
    # `created_at` (never updated, so appends do no index work; a response finishes
    # after it was created); `events_expired` is set once its event log was dropped
    # and its snapshot folded to the end.
    """
    ALTER TABLE responses ADD COLUMN events_expired INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX responses_by_created ON responses (created_at);
    CREATE INDEX responses_logs_kept ON responses (created_at) WHERE events_expired = 0;
    """,
]

RECENT_LINGER_SECONDS = 10.0  # how long a finished response's tail stays in memory
BATCH_LIMIT = 1024  # operations per transaction


# --- the database -------------------------------------------------------------


@dataclass(slots=True)
class _Op(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]
    on_commit: Callable[[T], None] | None
    result: Any = None
    error: BaseException | None = None


class SQLiteDatabase:
    """A SQLite file with one writer thread, a reader pool and a recent-event tail."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self.notifier = Notifier()
        self.job_signal = JobSignal()
        self.revoked: list[Callable[[str], None]] = []  # see JobQueue.watch_revoked
        self.recent: dict[str, EventWindow] = {}
        self.heads = Heads()  # the writer thread's, and only touched there
        self._queue: queue.SimpleQueue[list[_Op[Any]] | None] = queue.SimpleQueue()
        self._outbox: list[_Op[Any]] = []  # ops of this loop step, handed over together
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tether-sqlite-read")
        self._local = threading.local()
        self._writer: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock_fd: int | None = None
        self.batches = 0
        self.ops = 0

    def __repr__(self) -> str:
        return (
            f"<SQLiteDatabase path={str(self.path)!r} batches={self.batches} ops={self.ops} "
            f"recent={len(self.recent)}>"
        )

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._loop = asyncio.get_running_loop()
        self._writer = threading.Thread(target=self._run_writer, name="tether-sqlite-write")
        self._writer.daemon = True
        self._writer.start()
        await self.write(self._migrate)

    async def close(self) -> None:
        if self._writer is not None:
            if self._outbox:
                self._hand_over()
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        self._readers.shutdown(wait=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _take_lock(self) -> None:
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"Another Tether process is using the SQLite store {self.path}. A SQLite file "
                "belongs to one process; stop the other one, choose another --store file, or "
                "use PostgreSQL or Redis to run several processes."
            ) from None
        self._lock_fd = fd

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA wal_autocheckpoint=4000")  # fewer, larger checkpoints
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], on_commit: Callable[[T], None] | None = None
    ) -> asyncio.Future[T]:
        """Queue `fn` for the next group transaction; `on_commit` runs on the loop after
        COMMIT, before the future resolves."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._outbox:
            loop.call_soon(self._hand_over)
        self._outbox.append(_Op(fn, future, on_commit))
        return future

    def _hand_over(self) -> None:
        """One wake-up of the writer thread for all the ops of a loop step: waking it per
        op made the two threads trade the GIL for every event."""
        ops, self._outbox = self._outbox, []
        self._queue.put(ops)

    async def write(
        self, fn: Callable[[sqlite3.Connection], T], on_commit: Callable[[T], None] | None = None
    ) -> T:
        return await self.submit(fn, on_commit)

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        """Run `fn` on a reader thread; with `snapshot`, all its queries see one state."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_sync, fn, snapshot)

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T], snapshot: bool) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            conn.execute("PRAGMA query_only=1")
        try:
            if not snapshot:
                return fn(conn)
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite read failed: {exc}") from exc

    def _run_writer(self) -> None:
        conn = self._connect()
        stopping = False
        while not stopping:
            ops = self._queue.get()
            if ops is None:
                break
            batch: list[_Op[Any]] = list(ops)
            while len(batch) < BATCH_LIMIT:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.extend(more)
            self._run_batch(conn, batch)
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op[Any]]) -> None:
        """One transaction for the whole batch. An operation that refuses (a lost
        compare-and-append) refuses before it writes anything, so its neighbours commit
        without a savepoint each; a SQLite error fails the whole batch."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                try:
                    op.result = op.fn(conn)
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    op.error = exc
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                # SQLite may have rolled back by itself (it does on a full disk).
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self.heads.clear()  # they may have advanced with the rolled-back writes
            error = StorageError(self._write_failed(exc))
            for op in batch:
                op.error = error
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._complete, batch)

    def _write_failed(self, exc: sqlite3.Error) -> str:
        """The message of a failed write: a full disk says what to do about it."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL:
            return (
                f"SQLite could not write to {self.path}: the disk is full ({exc}). Free space "
                "on its filesystem; what was stored before stays readable."
            )
        if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
            return f"SQLite could not write to {self.path}: {exc} (is its disk full or failing?)"
        return f"SQLite write failed: {exc}"

    def _complete(self, batch: list[_Op[Any]]) -> None:
        self.batches += 1
        self.ops += len(batch)
        for op in batch:
            if op.error is None and op.on_commit is not None:
                op.on_commit(op.result)
            if op.future.done():
                continue
            if op.error is not None:
                op.future.set_exception(op.error)
            else:
                op.future.set_result(op.result)

    def remember(self, response_id: str, events: Sequence[ev.StoredEvent]) -> None:
        """Called on the loop after a commit: keep the tail, wake the readers."""
        recent = self.recent.get(response_id)
        self.recent[response_id] = (
            EventWindow(list(events)) if recent is None else recent.add(events)
        )
        finished = events[-1].terminal
        self.notifier.published(response_id, events[-1].seq, finished=finished)
        if finished:
            assert self._loop is not None
            self._loop.call_later(RECENT_LINGER_SECONDS, self.recent.pop, response_id, None)

    def revoke(self, response_id: str) -> None:
        """A job was removed by terminate or delete (called after the commit)."""
        for callback in self.revoked:
            callback(response_id)

    def forget(self, response_id: str) -> None:
        self.recent.pop(response_id, None)
        self.notifier.published(response_id, GONE, finished=True)
