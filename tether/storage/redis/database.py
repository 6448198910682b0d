"""`RedisDatabase`: what the Redis stores share — the store URL's settings, the key
names, the command connection (`Wire`), the wake-ups (`Wakeups`) — and the schema.

The URL is `redis://[user:password@]host:port/db?prefix=NAME&retention=SECONDS`
(`rediss://` for TLS). `prefix` (default `tether`) namespaces every key, so several
Tether installations can share one Redis database; `retention`, when given, is how
long a finished response's keys are kept before Redis expires them (default: kept
until deleted). Other query parameters go to redis-py (e.g. `socket_connect_timeout`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio.connection import AbstractConnection, ConnectionPool

from tether.errors import ConfigError, StorageError
from tether.storage.redis.backfill import index_finished
from tether.storage.redis.keys import Keys
from tether.storage.redis.scripts import MIGRATE
from tether.storage.redis.wake import Wakeups
from tether.storage.redis.wire import Wire

logger = logging.getLogger(__name__)

# 3: projects and API keys (a `project` field on responses and conversations — absent
# on older ones, which belong to 'default' —, `<p>:apikey:…` keys).
# 4: Idempotency-Key claims (`<p>:idem:…` keys, written by the create script). Keys
# need no migration; the number keeps an older Tether, which would not honour the
# claims (or the projects), off the store.
# 5: retention (`<p>:finished` and `<p>:logs` zsets, the `expired` field of a response
# whose event log was dropped): an older Tether would not know an expired log.
SCHEMA_VERSION = 5
RETENTION_INDEX_SCHEMA = 5  # the first schema with the finished-responses indexes
DEFAULT_PREFIX = "tether"
CONNECT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str  # for redis-py: without Tether's own parameters
    prefix: str
    retention: int  # seconds a finished response is kept; 0 = until deleted

    @property
    def where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"


def parse_url(url: str) -> RedisConfig:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"Bad Redis store URL {url!r}: use redis://host:6379/0?prefix=tether")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {name: value for name, value in query if name in ("prefix", "retention")}
    rest = [(name, value) for name, value in query if name not in ours]
    prefix = ours.get("prefix", DEFAULT_PREFIX)
    if not prefix or any(c.isspace() or c in "*?[]" for c in prefix):
        raise ConfigError(
            f"Bad prefix {prefix!r} in the Redis store URL: use letters, digits, '_', '-', "
            "':' or '.', e.g. ?prefix=tether"
        )
    try:
        retention = int(ours.get("retention", "0"))
    except ValueError:
        retention = -1
    if retention < 0:
        raise ConfigError(
            f"Bad retention {ours['retention']!r} in the Redis store URL: give whole seconds, "
            "e.g. ?retention=2592000 for 30 days (leave it out to keep responses until deleted)"
        )
    plain = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    return RedisConfig(plain, prefix, retention)


def connection_factory(config: RedisConfig, role: str) -> Callable[[], AbstractConnection]:
    """New, unconnected connections as the URL describes them, tuned for Tether's two
    long-lived connections: raw replies, RESP2, no read timeout (a pub/sub read waits
    for as long as nothing happens; `Wire` has its own stall check), TCP keepalive.
    They are named `tether:<prefix>:<role>` in CLIENT LIST."""
    try:
        pool = ConnectionPool.from_url(config.url)
    except ValueError as exc:
        raise ConfigError(f"Bad Redis store URL {config.url!r}: {exc}") from exc
    kwargs: dict[str, Any] = dict(pool.connection_kwargs)
    # redis-py 8 pools configure "maintenance notifications" for RESP3 connections; ours
    # speak RESP2, with which a connection given that configuration refuses to start.
    kwargs.pop("maint_notifications_config", None)
    kwargs.update(
        decode_responses=False,
        protocol=2,
        socket_timeout=None,
        socket_keepalive=True,
        health_check_interval=0,
        client_name=f"tether:{config.prefix}:{role}",
    )
    kwargs.setdefault("socket_connect_timeout", CONNECT_TIMEOUT_SECONDS)
    if kwargs["socket_connect_timeout"] is None:
        kwargs["socket_connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    connection_class = pool.connection_class

    def connect() -> AbstractConnection:
        return connection_class(**kwargs)

    return connect


class RedisDatabase:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.keys = Keys(config.prefix)
        self.retention = config.retention
        self.wire = Wire(connection_factory(config, "commands"), config.where)
        self.wake = Wakeups(
            connection_factory(config, "wakeups"), self.keys, self.refresh, config.where
        )

    def __repr__(self) -> str:
        return f"<RedisDatabase prefix={self.config.prefix!r} {self.wire!r} {self.wake!r}>"

    async def open(self) -> int:
        """Check the server, bring the schema up to date; answers the schema version."""
        info = await self.wire.call("INFO", "server")
        version = _info_field(info, b"redis_version")
        if version is not None and int(version.split(b".")[0]) < 5:
            raise ConfigError(
                f"Redis at {self.config.where} is version {version.decode()}; Tether needs "
                "Redis 5.0 or later (streams, ZPOPMIN)."
            )
        schema = await migrate_with(self.wire, self.keys)
        await self._warn_about_persistence()
        return schema

    async def _warn_about_persistence(self) -> None:
        """Say so when Redis is set up to lose what Tether promises to keep (docs/redis.md).
        Managed services often refuse CONFIG: then nothing is said."""
        try:
            appendonly = await self.wire.call("CONFIG", "GET", "appendonly")
            policy = await self.wire.call("CONFIG", "GET", "maxmemory-policy")
        except StorageError:
            return
        if appendonly[1:] != [b"yes"]:
            logger.warning(
                "Redis at %s runs without appendonly: a restart of Redis loses responses "
                "(their events since the last snapshot). Set 'appendonly yes' and "
                "'appendfsync everysec' (or always); see docs/redis.md.",
                self.config.where,
            )
        if policy[1:] != [b"noeviction"]:
            logger.warning(
                "Redis at %s has maxmemory-policy %s: under memory pressure it may evict "
                "responses and jobs. Set 'maxmemory-policy noeviction'; see docs/redis.md.",
                self.config.where,
                policy[1:],
            )

    async def close(self) -> None:
        await self.wake.close()
        await self.wire.close()

    async def refresh(self, response_id: str) -> int | None:
        """Read a response's last committed seq into the notifier (None: unknown)."""
        last, status = await self.wire.call(
            "HMGET", self.keys.response(response_id), "last", "status"
        )
        if last is None:
            return None
        seq = int(last)
        finished = status in (b"completed", b"incomplete", b"failed", b"cancelled")
        self.wake.notifier.published(response_id, seq, finished=finished)
        return seq


async def migrate_with(wire: Wire, keys: Keys) -> int:
    before = int(await wire.call("GET", keys.schema) or 0)
    found = int(await wire.run(MIGRATE, [keys.schema], [SCHEMA_VERSION]))
    if 0 < before < RETENTION_INDEX_SCHEMA <= found:
        await index_finished(wire, keys)  # finished under an older schema: see backfill.py
    if found > SCHEMA_VERSION:
        raise ConfigError(
            f"The Redis store under prefix {keys.prefix!r} has schema version {found}, "
            f"newer than this Tether's {SCHEMA_VERSION}: upgrade Tether, or use another prefix."
        )
    return found


def _info_field(info: bytes, name: bytes) -> bytes | None:
    for line in info.splitlines():
        if line.startswith(name + b":"):
            return line.split(b":", 1)[1].strip()
    return None
