"""Schema 5 indexes finished responses for retention (`<p>:finished`, `<p>:logs`,
written by the terminal append). Responses that finished under an older schema are
not in those indexes, so retention would keep them forever: on the upgrade to 5
this pass finds them (SCAN over `<p>:resp:*`) and adds them, scored by when they
finished as their snapshot says (`completed_at`, else `created_at`).

ZADD NX makes it safe to run twice or from several processes at once.
"""

from __future__ import annotations

import asyncio

import orjson

from tether.storage.redis.keys import Keys
from tether.storage.redis.wire import Wire

TERMINAL = {b"completed", b"incomplete", b"failed", b"cancelled"}
SCAN_COUNT = 500


async def index_finished(wire: Wire, keys: Keys) -> int:
    """Add every finished response missing from the retention indexes; answers how many."""
    added = 0
    cursor = b"0"
    pattern = keys.response("*")
    while True:
        cursor, names = await wire.call("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
        added += sum(await asyncio.gather(*(_index_one(wire, keys, n) for n in names)))
        if cursor in (b"0", 0):
            return added


async def _index_one(wire: Wire, keys: Keys, name: bytes) -> int:
    status, snapshot, expired = await wire.call("HMGET", name, "status", "snap", "expired")
    if status not in TERMINAL or snapshot is None:
        return 0
    response_id = name.decode().rsplit(":", 1)[1]
    data = orjson.loads(snapshot)
    when = data.get("completed_at") or data.get("created_at") or 0
    added = int(await wire.call("ZADD", keys.finished, "NX", when, response_id))
    if expired is None:
        await wire.call("ZADD", keys.logs, "NX", when, response_id)
    return added
