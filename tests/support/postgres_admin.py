"""PostgreSQL for tests: a store in a schema of its own, dropped when the store closes."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg

from tether.storage.base import Storage
from tether.storage.postgres import open_postgres, parse_url
from tether.storage.postgres.schema import quote


def with_schema(url: str, schema: str) -> str:
    """`url` naming `schema` (any `schema` it named is replaced)."""
    parts = urlsplit(parse_url(url).dsn)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"schema": schema})))


async def drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(parse_url(url).dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
    finally:
        await conn.close()


async def open_in_fresh_schema(url: str, schema: str) -> Storage:
    """A storage on a new schema `schema` of the database at `url`; its close drops
    the schema with everything in it."""
    await drop_schema(url, schema)
    storage = await open_postgres(with_schema(url, schema))

    async def close() -> None:
        try:
            await storage.close()
        finally:
            await drop_schema(url, schema)

    return dataclasses.replace(storage, close=close)
