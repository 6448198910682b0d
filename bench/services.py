"""PostgreSQL and Redis for the benchmark: a store URL under a namespace of its own
(schema / key prefix) for this run, and its removal afterwards.

URLs come from `TETHER_BENCH_POSTGRES_URL` / `TETHER_BENCH_REDIS_URL` (defaults: the
services on 127.0.0.1); an unreachable service is skipped, not an error.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from urllib.parse import urlsplit

POSTGRES_URL = os.environ.get(
    "TETHER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TETHER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return True
    except OSError:
        return False


class Namespaces:
    """The schemas / key prefixes one run created, removed by `drop_all`."""

    def __init__(self) -> None:
        self._made: list[tuple[str, str]] = []

    def store(self, kind: str) -> str | None:
        """A store URL of `kind` ("postgres" or "redis"), or None when unreachable."""
        name = f"tether_bench_{secrets.token_hex(4)}"
        if kind == "postgres":
            if not reachable(POSTGRES_URL):
                return None
            self._made.append((kind, name))
            return f"{POSTGRES_URL}?schema={name}"
        if kind == "redis":
            if not reachable(REDIS_URL):
                return None
            self._made.append((kind, name))
            return f"{REDIS_URL}?prefix={name}"
        raise ValueError(f"unknown service {kind!r}")

    def drop_all(self) -> None:
        if self._made:
            asyncio.run(self._drop())
        self._made.clear()

    async def _drop(self) -> None:
        for kind, name in self._made:
            if kind == "postgres":
                import asyncpg

                conn = await asyncpg.connect(POSTGRES_URL)
                try:
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                finally:
                    await conn.close()
            else:
                import redis.asyncio as aioredis

                client = aioredis.from_url(REDIS_URL)
                try:
                    keys = [key async for key in client.scan_iter(f"{name}*", count=1000)]
                    for start in range(0, len(keys), 500):
                        await client.unlink(*keys[start : start + 500])
                finally:
                    await client.aclose()
