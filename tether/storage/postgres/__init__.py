"""The PostgreSQL backend, for several processes sharing one store.

Modules: `schema` (versioned migrations) · `database` (the URL, the pool, notices,
errors) · `listen` (the LISTEN connection, heads and waiters) · `store`
(ResponseStore) · `log` (EventLog, group-committed appends) · `jobs` (JobQueue) ·
`conversations` (ConversationStore) · `apikeys` (KeyStore); opening and migrating here.

The URL names the schema that holds the tables: `postgresql://user@host/db?schema=NAME`
(default "tether"). Statements run on a small pool; writes that must be atomic are
one statement or one server-side function call (compare-and-append of a whole group
of appends is a single round trip). Other processes learn of commits through
LISTEN/NOTIFY on the schema's channels, sent inside the writing transaction so that
a notice is never delivered before its commit; waiters look at the tables only when
the LISTEN connection is down (a slow poll) or when they know nothing of a response.
"""

from __future__ import annotations

import asyncpg

from tether.storage.base import Storage
from tether.storage.postgres.apikeys import PostgresKeyStore
from tether.storage.postgres.conversations import PostgresConversationStore
from tether.storage.postgres.database import PostgresDatabase, Target, parse_url, translated
from tether.storage.postgres.jobs import PostgresJobQueue
from tether.storage.postgres.log import PostgresEventLog
from tether.storage.postgres.schema import LATEST, apply_migrations, check_known, installed_version
from tether.storage.postgres.store import PostgresResponseStore

__all__ = ["migrate", "open_postgres", "parse_url"]


async def migrate(url: str) -> int:
    """Create or upgrade the schema named by `url`; returns its version. Safe to run
    from several processes at once (they take turns on an advisory lock)."""
    return await _migrate(parse_url(url), only_if_behind=False)


async def _migrate(target: Target, *, only_if_behind: bool) -> int:
    with translated(f"connection to {target.location} (check the store URL)"):
        conn = await asyncpg.connect(target.dsn, timeout=10.0)
    with translated(f"migration of schema {target.schema!r} at {target.location}"):
        try:
            if only_if_behind:
                version = await installed_version(conn, target.schema)
                check_known(target.schema, version)
                if version == LATEST:
                    return version  # the usual start-up: no lock taken
            return await apply_migrations(conn, target.schema)
        finally:
            await conn.close()


async def open_postgres(url: str) -> Storage:
    """Open the store at `url`, first bringing its schema up to date (see `migrate`).

    Raises `ConfigError` for a bad URL or a schema newer than this code, and
    `StorageError` when the server cannot be reached."""
    target = parse_url(url)
    await _migrate(target, only_if_behind=True)
    db = PostgresDatabase(target)
    await db.open()
    events = PostgresEventLog(db)

    async def close() -> None:
        await events.writer.close()
        await db.close()

    return Storage(
        name="postgres",
        responses=PostgresResponseStore(db),
        events=events,
        jobs=PostgresJobQueue(db),
        conversations=PostgresConversationStore(db),
        close=close,
        keys=PostgresKeyStore(db),
    )
