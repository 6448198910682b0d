"""Redis for tests: a storage under a fresh key prefix whose close deletes every key
under that prefix (SCAN + UNLINK), so tests leave the shared server as they found it."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlencode, urlsplit, urlunsplit

import redis.asyncio as redis

from tether.storage.base import Storage
from tether.storage.redis import open_redis


def url_with_prefix(url: str, prefix: str, **params: str) -> str:
    """`url` with `?prefix=…` (and any other Tether parameters) added."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"prefix": prefix, **params})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


async def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under `prefix`; answers how many there were."""
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        cursor = None
        while cursor != 0:
            cursor, keys = await client.scan(cursor or 0, match=f"{prefix}:*", count=500)
            if keys:
                deleted += await client.unlink(*keys)
    finally:
        await client.aclose()
    return deleted


async def open_with_fresh_prefix(url: str, prefix: str, **params: str) -> Storage:
    """A storage on `url` under `prefix`; closing it deletes the prefix's keys."""
    storage = await open_redis(url_with_prefix(url, prefix, **params))

    async def close() -> None:
        try:
            await storage.close()
        finally:
            await delete_prefix(url, prefix)

    return dataclasses.replace(storage, close=close)
