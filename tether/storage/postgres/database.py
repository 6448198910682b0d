"""The PostgreSQL store as a whole: its URL, the connection pool, the LISTEN connection,
the in-process wake-ups, and the translation of driver errors.

Sections: the URL · errors · the database · event rows.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from tether.domain import events as ev
from tether.errors import ConfigError, StorageError, StoreUnavailableError
from tether.storage.notify import GONE, JobSignal
from tether.storage.postgres.listen import Heads, Listener
from tether.storage.postgres.schema import quote

# --- the URL ----------------------------------------------------------------------

DEFAULT_SCHEMA = "tether"
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


@dataclass(frozen=True, slots=True)
class Target:
    """Where the store lives: the connection URL (without `schema`) and the schema."""

    dsn: str
    schema: str

    @property
    def location(self) -> str:
        """host:port/database, without credentials (for messages)."""
        parts = urlsplit(self.dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"

    @property
    def events_channel(self) -> str:
        return f"{self.schema}.events"

    @property
    def jobs_channel(self) -> str:
        return f"{self.schema}.jobs"


def parse_url(url: str) -> Target:
    """`postgresql://user@host:5432/db?schema=name` → the DSN to connect to and the schema
    (default "tether"); other query parameters go to the driver as they are."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"Bad PostgreSQL store URL {url!r}: use postgresql://user@host/db")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    schema = schemas[-1] if schemas else DEFAULT_SCHEMA
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"Bad schema {schema!r} in the PostgreSQL store URL: use ?schema=NAME with a name "
            "of letters, digits and underscores (at most 48, not starting with a digit)."
        )
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return Target(urlunsplit(parts._replace(query=rest)), schema)


# --- errors -----------------------------------------------------------------------

DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# The server could not be reached, or went away: refused or lost connections, a server
# starting up or shutting down, a statement whose answer never came. Retrying may
# succeed once it is back (a restart); a write's outcome is unknown.
UNAVAILABLE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise driver and network errors as `StorageError` — `StoreUnavailableError` when
    the server could not be reached (ours pass through)."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailableError(f"PostgreSQL {what} failed: {_reason(exc)}") from exc
    except DRIVER_ERRORS as exc:
        raise StorageError(f"PostgreSQL {what} failed: {exc}") from exc


def _reason(exc: BaseException) -> str:
    """What went wrong, for a message: some errors (a timeout) have no text of their own."""
    return str(exc) or type(exc).__name__


# --- the database -----------------------------------------------------------------

POOL_SIZE = 10
COMMAND_TIMEOUT_SECONDS = 60.0  # a statement that takes longer fails with StorageError


class PostgresDatabase:
    """The pool for statements, the LISTEN connection, and this process's wake-ups."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.origin = secrets.token_hex(6)  # marks the notices this process sends
        self.heads = Heads()
        self.job_signal = JobSignal()
        self.revoked: list[Callable[[str], None]] = []  # see JobQueue.watch_revoked
        self._pool: asyncpg.Pool | None = None
        self.listener = Listener(
            self._connect_listener,
            {target.events_channel: self._events_notice, target.jobs_channel: self._jobs_notice},
            self.heads,
            # Jobs may have been enqueued meanwhile; revoked ones are found by the
            # worker's lease renewal.
            on_reconnect=self.job_signal.set,
        )

    def __repr__(self) -> str:
        return f"<PostgresDatabase schema={self.target.schema!r} {self.heads!r}>"

    async def open(self) -> None:
        settings = self._server_settings()
        with translated(f"store at {self.target.location} (schema {self.target.schema!r})"):
            self._pool = await asyncpg.create_pool(
                self.target.dsn,
                min_size=1,
                max_size=POOL_SIZE,
                server_settings=settings,
                reset=_keep_session,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
            )
            try:
                await self.listener.start()
            except BaseException:
                await self._pool.close()
                raise

    async def close(self) -> None:
        await self.listener.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 10.0)
            except (*DRIVER_ERRORS, TimeoutError):
                pool.terminate()

    def _server_settings(self) -> dict[str, str]:
        return {"search_path": quote(self.target.schema), "application_name": "tether"}

    async def _connect_listener(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.target.dsn, server_settings=self._server_settings(), timeout=10.0
        )

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("the PostgreSQL store is closed")
        return self._pool

    @asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[Any]:
        """A pooled connection inside a transaction; driver errors become StorageError."""
        with translated(what):
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn

    # --- notices -------------------------------------------------------------------

    def events_notice(self, pairs: Sequence[tuple[str, int]]) -> str:
        return "\n".join([self.origin, *(f"{rid}:{seq}" for rid, seq in pairs)])

    def job_notice(self, sign: str, response_id: str) -> str:
        return f"{self.origin} {sign}{response_id}"

    def _events_notice(self, payload: str) -> None:
        lines = payload.split("\n")
        if lines[0] == self.origin:
            return
        for line in lines[1:]:
            response_id, _, seq = line.rpartition(":")
            last_seq = int(seq)
            self.heads.published(response_id, last_seq, finished=last_seq >= GONE)

    def _jobs_notice(self, payload: str) -> None:
        origin, _, rest = payload.partition(" ")
        if origin == self.origin or not rest:
            return
        if rest[0] == "+":
            self.job_signal.set()
        elif rest[0] == "-":
            self.revoke(rest[1:])

    def revoke(self, response_id: str) -> None:
        """A job was removed by terminate or delete (called after the commit)."""
        for callback in self.revoked:
            callback(response_id)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections keep their session: no statement here changes it (no
    LISTEN, session settings or advisory locks on pooled connections), and the
    driver's default reset query would cost a round trip per statement."""


# --- event rows -------------------------------------------------------------------


def joined(events: Sequence[ev.StoredEvent]) -> bytes:
    """The frames of a batch, as one row stores them."""
    return events[0].frame if len(events) == 1 else b"".join([e.frame for e in events])


def split_frames(
    first_seq: int, frames: bytes, after: int, into: list[ev.StoredEvent], limit: int | None
) -> bool:
    """Append the events of one row with seq > `after` to `into`; False once `limit` is
    reached. Frames end with a blank line and their JSON never holds a raw newline."""
    for offset, frame in enumerate(frames.split(b"\n\n")[:-1]):
        seq = first_seq + offset
        if seq > after:
            event_type = frame[7 : frame.index(b"\n")].decode()  # after b"event: "
            into.append(ev.StoredEvent(seq, event_type, frame + b"\n\n"))
            if limit is not None and len(into) >= limit:
                return False
    return True
