"""`PostgresKeyStore`: API keys in table `api_keys` (the SHA-256 of each secret, found
by the key's id; see `tether.storage.apikeys`)."""

from __future__ import annotations

import time

from tether.storage.apikeys import issue, parse, verified
from tether.storage.base import ApiKey, Principal
from tether.storage.postgres.database import PostgresDatabase, translated


class PostgresKeyStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<PostgresKeyStore {self._db!r}>"

    async def create(self, project: str, name: str | None = None) -> tuple[str, str]:
        issued = issue(project, name)
        record = issued.record
        with translated("create key"):
            await self._db.pool.execute(
                "INSERT INTO api_keys (id, project, name, digest, created_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                record.id,
                record.project,
                record.name,
                issued.digest,
                record.created_at,
            )
        return record.id, issued.text

    async def list(self) -> list[ApiKey]:
        with translated("list keys"):
            rows = await self._db.pool.fetch(
                "SELECT id, project, name, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at, id"
            )
        return [ApiKey(*row) for row in rows]

    async def revoke(self, key_id: str) -> bool:
        with translated("revoke key"):
            found = await self._db.pool.fetchval(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 "
                "RETURNING 1",
                key_id,
                time.time(),
            )
        return found is not None

    async def lookup(self, key: str) -> Principal | None:
        parsed = parse(key)
        if parsed is None:
            return None
        key_id, presented = parsed
        with translated("look up key"):
            row = await self._db.pool.fetchrow(
                "SELECT project, digest, revoked_at FROM api_keys WHERE id = $1", key_id
            )
        if row is None:
            return None
        project, stored, revoked_at = row
        return verified(key_id, project, bytes(stored), revoked_at is not None, presented)
