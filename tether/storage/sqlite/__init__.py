"""The embedded default backend: one SQLite file in WAL mode.

Modules: `database` (the writer thread, the reader pool, the recent-event tail, the
schema) · `rows` (the writer's heads, reading and inserting events) · `store`
(ResponseStore) · `log` (EventLog) · `jobs` (JobQueue) · `conversations`
(ConversationStore) · `apikeys` (KeyStore); opening here.

Writes go to one writer thread that group-commits: every operation queued while it
was busy runs in one transaction. An operation that refuses (a lost
compare-and-append) refuses before it writes, so it never undoes its neighbours.
Results and wake-ups are delivered on the event loop after the COMMIT, so nobody
sees an event before it is durable. Reads run on a small thread pool with their own
connections; live tails are served from a bounded in-memory copy of each active
response's most recent committed events, so following a stream costs no query.

One process owns a SQLite file (a lock file enforces it); several processes
share state through PostgreSQL or Redis instead.
"""

from __future__ import annotations

from pathlib import Path

from tether.errors import ConfigError
from tether.storage.base import Storage
from tether.storage.sqlite.apikeys import SQLiteKeyStore
from tether.storage.sqlite.conversations import SQLiteConversationStore
from tether.storage.sqlite.database import MIGRATIONS, SQLiteDatabase
from tether.storage.sqlite.jobs import SQLiteJobQueue
from tether.storage.sqlite.log import SQLiteEventLog
from tether.storage.sqlite.store import SQLiteResponseStore

__all__ = ["SQLiteDatabase", "open_sqlite", "sqlite_path"]


def sqlite_path(url: str) -> Path:
    """`sqlite:///tether.db` → ./tether.db; `sqlite:////var/lib/tether.db` → absolute."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(
            f"Bad SQLite store URL {url!r}: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    return Path(url[len(prefix) :])


async def open_sqlite(url: str, *, synchronous: str = "NORMAL") -> Storage:
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError(
            f"sqlite synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}"
        )
    db = SQLiteDatabase(sqlite_path(url), synchronous.upper())
    await db.open()
    return Storage(
        name="sqlite",
        responses=SQLiteResponseStore(db),
        events=SQLiteEventLog(db),
        jobs=SQLiteJobQueue(db),
        conversations=SQLiteConversationStore(db),
        close=db.close,
        schema_version=len(MIGRATIONS),
        keys=SQLiteKeyStore(db),
    )
