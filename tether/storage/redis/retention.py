"""Retention in Redis (`RedisResponseStore.expire`): finished responses are indexed
by when they finished (`<p>:finished`, and `<p>:logs` while their event log is kept,
both written by the terminal append); these scripts delete the old ones and drop the
old logs. Each takes an id off its index before touching it, so workers running
them at once never handle a response twice."""

from __future__ import annotations

from tether.storage.redis.database import RedisDatabase
from tether.storage.redis.log import current
from tether.storage.redis.scripts import _script

# Delete up to `limit` responses that finished before `before` (their row, events
# and input items; the job went when they finished); their ids.
# KEYS: finished, logs;  ARGV: prefix, before, limit
DELETE_FINISHED = _script(
    "delete_finished",
    r"""
local prefix = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
local deleted = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  local resp = prefix .. ':resp:' .. id
  if redis.call('EXISTS', resp) == 1 then
    redis.call('UNLINK', resp, prefix .. ':events:' .. id, prefix .. ':input:' .. id,
               prefix .. ':input-index:' .. id)
    redis.call('PUBLISH', prefix .. ':wake:' .. id, 'gone')
    table.insert(deleted, id)
  end
end
return deleted
""",
)

# Drop one response's event log, keeping its snapshot folded to the last event: 1,
# or 0 when another worker did it first or the response is gone.
# KEYS: logs, resp, events;  ARGV: id, snapshot, last seq
DROP_LOG = _script(
    "drop_log",
    r"""
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local row = redis.call('HMGET', KEYS[2], 'status', 'last')
if not row[1] or not TERMINAL[row[1]] or row[2] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[2], 'snap', ARGV[2], 'snap_seq', ARGV[3], 'expired', '1')
redis.call('UNLINK', KEYS[3])
return 1
""",
)


async def expire(
    db: RedisDatabase, responses_before: float, events_before: float, limit: int
) -> int:
    keys = db.keys
    deleted = await db.wire.run(
        DELETE_FINISHED, [keys.finished, keys.logs], [keys.prefix, repr(responses_before), limit]
    )
    for raw in deleted:
        db.wake.gone(raw.decode())
    dropped = 0
    old = await db.wire.call(
        "ZRANGEBYSCORE", keys.logs, "-inf", f"({events_before!r}", "LIMIT", 0, limit
    )
    for raw in old:
        response_id = raw.decode()
        stored = await current(db, response_id)
        if stored is None:  # expired by the URL's `retention` meanwhile: unindex it
            await db.wire.call("ZREM", keys.logs, response_id)
            continue
        if await db.wire.run(
            DROP_LOG,
            [keys.logs, keys.response(response_id), keys.events(response_id)],
            [response_id, stored.snapshot, stored.last_seq],
        ):
            db.wake.expired(response_id)
            dropped += 1
    return len(deleted) + dropped
