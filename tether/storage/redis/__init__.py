"""The Redis backend: several API and worker processes share one Redis (`redis://…`).

Modules: `database` (the URL, the shared parts, the schema) · `keys` (key and channel
names) · `scripts` (the Lua scripts: every write is one atomic script) · `wire` (one
multiplexed connection: commands of a loop step share a write) · `wake` (pub/sub
wake-ups across processes) · `store` (ResponseStore) · `log` (EventLog) · `jobs`
(JobQueue) · `conversations` (ConversationStore) · `apikeys` (KeyStore); opening here.

Durability is Redis's: a reply (and a PUBLISH) leaves Redis only after the write
reached its append-only file as `appendfsync` says. Run Redis with `appendonly yes`
and `maxmemory-policy noeviction` — see docs/redis.md.
"""

from __future__ import annotations

from tether.storage.base import Storage
from tether.storage.redis.apikeys import RedisKeyStore
from tether.storage.redis.conversations import RedisConversationStore
from tether.storage.redis.database import (
    SCHEMA_VERSION,
    RedisDatabase,
    connection_factory,
    migrate_with,
    parse_url,
)
from tether.storage.redis.jobs import RedisJobQueue
from tether.storage.redis.keys import Keys
from tether.storage.redis.log import RedisEventLog
from tether.storage.redis.store import RedisResponseStore
from tether.storage.redis.wire import Wire

__all__ = ["SCHEMA_VERSION", "RedisDatabase", "migrate", "open_redis", "parse_url"]


async def open_redis(url: str) -> Storage:
    """Open the store at `url`, bringing its schema up to date (safe when several
    processes start at once: the migration is one script)."""
    db = RedisDatabase(parse_url(url))
    try:
        schema = await db.open()
    except BaseException:
        await db.close()
        raise
    log = RedisEventLog(db)
    return Storage(
        name="redis",
        responses=RedisResponseStore(db, log),
        events=log,
        jobs=RedisJobQueue(db),
        conversations=RedisConversationStore(db),
        close=db.close,
        schema_version=schema,
        keys=RedisKeyStore(db),
    )


async def migrate(url: str) -> int:
    """Bring the schema under the URL's prefix up to date; answers its version.

    Raises `ConfigError` when the store was written by a newer Tether."""
    config = parse_url(url)
    wire = Wire(connection_factory(config, "migrate"), config.where)
    try:
        return await migrate_with(wire, Keys(config.prefix))
    finally:
        await wire.close()
