"""`RedisKeyStore`: API keys as `<p>:apikey:<id>` hashes (project, name, digest — the
SHA-256 of the secret —, created, revoked) listed by the `<p>:apikeys` sorted set
(id by creation time); see `tether.storage.apikeys`. Writes are one script each."""

from __future__ import annotations

import time
from typing import Any

from tether.storage.apikeys import issue, parse, verified
from tether.storage.base import ApiKey, Principal
from tether.storage.redis.database import RedisDatabase
from tether.storage.redis.scripts import Script

# KEYS: key hash, listing;  ARGV: id, project, name ('' = none), digest, created_at
_CREATE = Script(
    "apikey_create",
    r"""
redis.call('HSET', KEYS[1], 'project', ARGV[2], 'digest', ARGV[4], 'created', ARGV[5])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'name', ARGV[3]) end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
return 1
""",
)

# KEYS: key hash;  ARGV: revoked_at. 0 when there is no such key.
_REVOKE = Script(
    "apikey_revoke",
    r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'revoked', ARGV[1])
return 1
""",
)

# KEYS: listing;  ARGV: prefix. Answers id, project, name, created, revoked per key.
_LIST = Script(
    "apikey_list",
    r"""
local listed = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local row = redis.call('HMGET', ARGV[1] .. ':apikey:' .. id, 'project', 'name', 'created',
                         'revoked')
  listed[#listed + 1] = {id, row[1], row[2], row[3], row[4]}
end
return listed
""",
)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _time(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _record(row: list[Any]) -> ApiKey:
    key_id, project, name, created, revoked = row
    return ApiKey(key_id.decode(), project.decode(), _text(name), float(created), _time(revoked))


class RedisKeyStore:
    def __init__(self, db: RedisDatabase) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"<RedisKeyStore {self._db!r}>"

    async def create(self, project: str, name: str | None = None) -> tuple[str, str]:
        issued = issue(project, name)
        record = issued.record
        keys = self._db.keys
        await self._db.wire.run(
            _CREATE,
            [keys.api_key(record.id), keys.api_keys],
            [record.id, record.project, record.name or "", issued.digest, repr(record.created_at)],
        )
        return record.id, issued.text

    async def list(self) -> list[ApiKey]:
        rows = await self._db.wire.run(_LIST, [self._db.keys.api_keys], [self._db.keys.prefix])
        return [_record(row) for row in rows]

    async def revoke(self, key_id: str) -> bool:
        found = await self._db.wire.run(
            _REVOKE, [self._db.keys.api_key(key_id)], [repr(time.time())]
        )
        return bool(found)

    async def lookup(self, key: str) -> Principal | None:
        parsed = parse(key)
        if parsed is None:
            return None
        key_id, presented = parsed
        project, stored, revoked = await self._db.wire.call(
            "HMGET", self._db.keys.api_key(key_id), "project", "digest", "revoked"
        )
        if project is None or stored is None:
            return None
        return verified(key_id, project.decode(), stored, revoked is not None, presented)
