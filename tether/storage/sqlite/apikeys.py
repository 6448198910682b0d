"""`SQLiteKeyStore`: API keys in table `api_keys` (the SHA-256 of each secret, found
by the key's id; see `tether.storage.apikeys`)."""

from __future__ import annotations

import sqlite3
import time

from tether.storage.apikeys import issue, parse, verified
from tether.storage.base import ApiKey, Principal
from tether.storage.sqlite.database import SQLiteDatabase


class SQLiteKeyStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<SQLiteKeyStore {self._db!r}>"

    async def create(self, project: str, name: str | None = None) -> tuple[str, str]:
        issued = issue(project, name)
        record = issued.record

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO api_keys (id, project, name, digest, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (record.id, record.project, record.name, issued.digest, record.created_at),
            )

        await self._db.write(insert)
        return record.id, issued.text

    async def list(self) -> list[ApiKey]:
        def select(conn: sqlite3.Connection) -> list[ApiKey]:
            rows = conn.execute(
                "SELECT id, project, name, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at, id"
            )
            return [ApiKey(*row) for row in rows]

        return await self._db.read(select)

    async def revoke(self, key_id: str) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                (time.time(), key_id),
            )
            return cursor.rowcount > 0

        return await self._db.write(update)

    async def lookup(self, key: str) -> Principal | None:
        parsed = parse(key)
        if parsed is None:
            return None
        key_id, presented = parsed

        def select(conn: sqlite3.Connection) -> tuple[str, bytes, float | None] | None:
            row = conn.execute(
                "SELECT project, digest, revoked_at FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
            return None if row is None else (row[0], bytes(row[1]), row[2])

        found = await self._db.read(select)
        if found is None:
            return None
        project, stored, revoked_at = found
        return verified(key_id, project, stored, revoked_at is not None, presented)
