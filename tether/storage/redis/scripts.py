"""The Lua scripts of the Redis backend: each one is a whole store operation, atomic on
the server and one round trip (EVALSHA; `wire.Wire` loads a script again after
NOSCRIPT, e.g. after SCRIPT FLUSH or a restart without persistence of the script cache).

Key names follow `keys.py`. The scripts declare the response's main keys in KEYS and
build the others (job, conversation, channels) from the prefix in ARGV: Tether runs
on a standalone Redis (or one behind Sentinel), not on Redis Cluster.

Scripts answer a table whose first element says what happened (`ok`, `gone`,
`terminal`, `moved`, `exists`, `duplicate`, …); the Python side turns these into
Tether's errors.

Sections: helpers · responses · the event log · jobs · conversations · schema.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


# --- helpers ------------------------------------------------------------------------

_HELPERS = r"""
local TERMINAL = {completed = true, incomplete = true, failed = true, cancelled = true}

-- The first item id among the (id, json) pairs ARGV[first..] that the conversation
-- holds (its order zset) or that repeats among them.
local function duplicate(order_key, first)
  local seen = {}
  for i = first, #ARGV, 2 do
    local item_id = ARGV[i]
    if seen[item_id] or redis.call('ZSCORE', order_key, item_id) then return item_id end
    seen[item_id] = true
  end
  return false
end

-- Append the (id, json) pairs ARGV[first..] after the conversation's last item;
-- with `skip_present`, leave out ids it already holds.
local function add_items(prefix, cid, first, skip_present)
  local conv = prefix .. ':conv:' .. cid
  local order = prefix .. ':conv-order:' .. cid
  local items = prefix .. ':conv-items:' .. cid
  local position = tonumber(redis.call('HGET', conv, 'next'))
  for i = first, #ARGV, 2 do
    if not (skip_present and redis.call('ZSCORE', order, ARGV[i])) then
      redis.call('ZADD', order, position, ARGV[i])
      redis.call('HSET', items, ARGV[i], ARGV[i + 1])
      position = position + 1
    end
  end
  redis.call('HSET', conv, 'next', position)
end

local function owner_of(lease)
  return string.sub(lease, string.find(lease, ' ', 1, true) + 1)
end
"""


def _script(name: str, body: str) -> Script:
    return Script(name, _HELPERS + body)


# --- responses ------------------------------------------------------------------------

# KEYS: resp, events, input, input-index
# ARGV: 1 id, 2 status, 3 snapshot, 4 last_seq, 5 entry id, 6 frames, 7 created_at,
#       8 job payload, 9 prefix, 10 conversation id ('' = none), 11 n (input items),
#       12.. n item JSONs, then their n ids, then the conversation's (id, json) pairs,
#       and last the project (taken off first, since the pairs run to ARGV's end).
_CREATE = r"""
local project = table.remove(ARGV)
local id, prefix, cid = ARGV[1], ARGV[9], ARGV[10]
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local n = tonumber(ARGV[11])
local conv_first = 12 + 2 * n
local link = false
if cid ~= '' then
  local generation = redis.call('HGET', prefix .. ':conv:' .. cid, 'gen')
  if not generation then return {'no_conversation'} end
  local dup = duplicate(prefix .. ':conv-order:' .. cid, conv_first)
  if dup then return {'duplicate', dup} end
  link = cid .. ' ' .. generation
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'snap', ARGV[3], 'snap_seq', ARGV[4],
  'last', ARGV[4], 'created', ARGV[7], 'project', project)
if link then redis.call('HSET', KEYS[1], 'conv', link) end
redis.call('XADD', KEYS[2], ARGV[5], 'f', ARGV[6])
for start = 12, 11 + n, 1000 do
  redis.call('RPUSH', KEYS[3], unpack(ARGV, start, math.min(start + 999, 11 + n)))
end
for i = 0, n - 1 do redis.call('HSETNX', KEYS[4], ARGV[12 + n + i], i) end
local order = redis.call('HINCRBY', prefix .. ':counters', 'jobs', 1)
redis.call('HSET', prefix .. ':job:' .. id, 'payload', ARGV[8], 'attempts', 0, 'order', order)
redis.call('ZADD', prefix .. ':jobs:queued', order, id)
if link then add_items(prefix, cid, conv_first, false) end
redis.call('PUBLISH', prefix .. ':jobs', id)
return {'ok'}
"""
CREATE = _script("create", _CREATE)

# CREATE with an Idempotency-Key claim: answers {'held', response id, body hash} and
# writes nothing while the claim key exists (Redis expires it when the claim lapses);
# else runs CREATE and, when that succeeds, writes the claim with its expiry.
# KEYS: as CREATE, then the claim key;  ARGV: as CREATE, then the body hash and the
# lapse time (unix milliseconds) — taken off ARGV first, since CREATE reads to its end.
CREATE_CLAIMED = _script(
    "create_claimed",
    r"""
local expires_at = table.remove(ARGV)
local body_hash = table.remove(ARGV)
local held = redis.call('HMGET', KEYS[5], 'response', 'hash')
if held[1] then return {'held', held[1], held[2]} end
local reply = (function()
"""
    + _CREATE
    + r"""
end)()
if reply[1] == 'ok' then
  redis.call('HSET', KEYS[5], 'response', ARGV[1], 'hash', body_hash)
  redis.call('PEXPIREAT', KEYS[5], expires_at)
end
return reply
""",
)

# The response as stored (its project: nil before projects existed), and the log
# entries past its snapshot (for the fold). KEYS: resp, events
CURRENT = _script(
    "current",
    r"""
local row = redis.call('HMGET', KEYS[1], 'status', 'snap', 'snap_seq', 'last', 'project')
if not row[1] then return false end
if tonumber(row[4]) > tonumber(row[3]) then
  row[6] = redis.call('XRANGE', KEYS[2], tonumber(row[3]) + 1, '+')
end
return row
""",
)

# KEYS: input, input-index, resp;  ARGV: after ('' = from the start), limit, order
INPUT_PAGE = _script(
    "input_page",
    r"""
if redis.call('EXISTS', KEYS[3]) == 0 then return {'gone'} end
local n = redis.call('LLEN', KEYS[1])
local limit = tonumber(ARGV[2])
local position = false
if ARGV[1] ~= '' then
  position = redis.call('HGET', KEYS[2], ARGV[1])
  if not position then return {'after'} end
  position = tonumber(position)
end
if ARGV[3] == 'asc' then
  local start = position and position + 1 or 0
  if limit < 1 then return {'ok', start < n and 1 or 0, {}} end
  local more = start + limit < n and 1 or 0
  return {'ok', more, redis.call('LRANGE', KEYS[1], start, start + limit - 1)}
end
local stop = position and position - 1 or n - 1
if stop < 0 or limit < 1 then return {'ok', stop >= 0 and 1 or 0, {}} end
local start = math.max(stop - limit + 1, 0)
return {'ok', start > 0 and 1 or 0, redis.call('LRANGE', KEYS[1], start, stop)}
""",
)

# KEYS: resp, events, input, input-index;  ARGV: id, prefix, origin
DELETE = _script(
    "delete",
    r"""
local id, prefix = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', prefix .. ':finished', id)
redis.call('ZREM', prefix .. ':logs', id)
local had_job = redis.call('DEL', prefix .. ':job:' .. id)
redis.call('ZREM', prefix .. ':jobs:queued', id)
redis.call('HDEL', prefix .. ':jobs:leases', id)
redis.call('PUBLISH', prefix .. ':wake:' .. id, 'gone')
if had_job == 1 then redis.call('PUBLISH', prefix .. ':revoked', ARGV[3] .. ' ' .. id) end
return 1 + had_job
""",
)

# --- the event log --------------------------------------------------------------------

# The compare-and-append (also used by terminate, with ending 'revoke').
# KEYS: resp, events
# ARGV: 1 id, 2 first seq, 3 last seq, 4 frames, 5 status, 6 snapshot ('' = keep the
#       stored one), 7 ending ('' = not terminal, 'end', 'revoke'), 8 prefix,
#       9 retention seconds (0 = keep), 10 origin, 11.. output (id, json) pairs to add
#       to the response's conversation.
APPEND = _script(
    "append",
    r"""
local id, prefix = ARGV[1], ARGV[8]
local row = redis.call('HMGET', KEYS[1], 'status', 'last', 'conv')
if not row[1] then return {'gone'} end
if TERMINAL[row[1]] then return {'terminal', row[1]} end
local first, last = tonumber(ARGV[2]), tonumber(ARGV[3])
if tonumber(row[2]) ~= first - 1 then return {'moved', row[2]} end
redis.call('XADD', KEYS[2], ARGV[3] .. '-' .. (last - first + 1), 'f', ARGV[4])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'status', ARGV[5], 'last', ARGV[3], 'snap', ARGV[6],
    'snap_seq', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'status', ARGV[5], 'last', ARGV[3])
end
local ending = ARGV[7]
local count = last - first + 1
if ending == '' then
  redis.call('PUBLISH', prefix .. ':wake:' .. id, ARGV[3] .. ' ' .. count .. '\n' .. ARGV[4])
  return {'ok', 0}
end
local had_job = redis.call('DEL', prefix .. ':job:' .. id)
redis.call('ZREM', prefix .. ':jobs:queued', id)
redis.call('HDEL', prefix .. ':jobs:leases', id)
local now = redis.call('TIME')
local finished = now[1] .. '.' .. string.format('%06d', now[2])
redis.call('ZADD', prefix .. ':finished', finished, id)
redis.call('ZADD', prefix .. ':logs', finished, id)
if #ARGV > 10 and row[3] then
  local cid, generation = string.match(row[3], '^(.*) (%d+)$')
  if redis.call('HGET', prefix .. ':conv:' .. cid, 'gen') == generation then
    add_items(prefix, cid, 11, true)
  end
end
local retention = tonumber(ARGV[9])
if retention > 0 then
  for _, key in ipairs({KEYS[1], KEYS[2], prefix .. ':input:' .. id,
                        prefix .. ':input-index:' .. id}) do
    redis.call('EXPIRE', key, retention)
  end
end
if ending == 'revoke' and had_job == 1 then
  redis.call('PUBLISH', prefix .. ':revoked', ARGV[10] .. ' ' .. id)
end
redis.call('PUBLISH', prefix .. ':wake:' .. id, ARGV[3] .. ' ' .. count .. ' end\n' .. ARGV[4])
return {'ok', had_job}
""",
)

# Committed entries with last seq > after (XRANGE from `after + 1`); nil when the
# response does not exist, 'expired' when its log was dropped (`retention.py`).
# KEYS: events, resp;  ARGV: start, count
READ = _script(
    "read",
    r"""
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
if #entries == 0 then
  local row = redis.call('HMGET', KEYS[2], 'status', 'expired')
  if not row[1] then return false end
  if row[2] then return 'expired' end
end
return entries
""",
)

# --- jobs -----------------------------------------------------------------------------

# KEYS: queued, leases;  ARGV: prefix, owner, limit, lease_until (unix seconds)
CLAIM = _script(
    "claim",
    r"""
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[3])
local claimed = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local job = ARGV[1] .. ':job:' .. id
  local payload = redis.call('HGET', job, 'payload')
  if payload then
    local attempts = redis.call('HINCRBY', job, 'attempts', 1)
    redis.call('HSET', KEYS[2], id, ARGV[4] .. ' ' .. ARGV[2])
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = attempts
    claimed[#claimed + 1] = payload
  end
end
return claimed
""",
)

# KEYS: leases;  ARGV: owner, lease_until, ids…
RENEW = _script(
    "renew",
    r"""
local held = {}
for i = 3, #ARGV do
  local lease = redis.call('HGET', KEYS[1], ARGV[i])
  if lease and owner_of(lease) == ARGV[1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[2] .. ' ' .. ARGV[1])
    held[#held + 1] = ARGV[i]
  end
end
return held
""",
)

# KEYS: leases, queued, job;  ARGV: id, owner, prefix
REQUEUE = _script(
    "requeue",
    r"""
local lease = redis.call('HGET', KEYS[1], ARGV[1])
if not lease or owner_of(lease) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local order = redis.call('HGET', KEYS[3], 'order')
if not order then return 0 end
redis.call('ZADD', KEYS[2], order, ARGV[1])
redis.call('PUBLISH', ARGV[3] .. ':jobs', ARGV[1])
return 1
""",
)

# --- conversations --------------------------------------------------------------------

# KEYS: conv, conv-order;  ARGV: prefix, id, created_at, metadata, (id, json) pairs…,
# project (last: taken off first, since the pairs run to ARGV's end)
CONVERSATION_CREATE = _script(
    "conversation_create",
    r"""
local project = table.remove(ARGV)
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local dup = duplicate(KEYS[2], 5)
if dup then return {'duplicate', dup} end
local generation = redis.call('HINCRBY', ARGV[1] .. ':counters', 'conversations', 1)
redis.call('HSET', KEYS[1], 'created', ARGV[3], 'meta', ARGV[4], 'gen', generation, 'next', 0,
  'project', project)
add_items(ARGV[1], ARGV[2], 5, false)
return {'ok'}
""",
)

# KEYS: conv;  ARGV: metadata. Answers {created, project}.
CONVERSATION_UPDATE = _script(
    "conversation_update",
    r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'meta', ARGV[1])
return redis.call('HMGET', KEYS[1], 'created', 'project')
""",
)

# KEYS: conv, conv-order, conv-items
CONVERSATION_DELETE = _script(
    "conversation_delete",
    r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])
return 1
""",
)

# KEYS: conv, conv-order;  ARGV: prefix, id, (id, json) pairs…
CONVERSATION_ADD = _script(
    "conversation_add",
    r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local dup = duplicate(KEYS[2], 3)
if dup then return {'duplicate', dup} end
add_items(ARGV[1], ARGV[2], 3, false)
return {'ok'}
""",
)

# KEYS: conv, conv-order, conv-items;  ARGV: after ('' = from the start), limit, order
CONVERSATION_PAGE = _script(
    "conversation_page",
    r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local limit = tonumber(ARGV[2])
local bound = false
if ARGV[1] ~= '' then
  bound = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not bound then return {'after'} end
  bound = '(' .. bound
end
local ids
if ARGV[3] == 'asc' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[2], bound or '-inf', '+inf', 'LIMIT', 0, limit + 1)
else
  ids = redis.call('ZREVRANGEBYSCORE', KEYS[2], bound or '+inf', '-inf', 'LIMIT', 0, limit + 1)
end
local more = 0
if #ids > limit then
  more = 1
  ids[#ids] = nil
end
local items = {}
for start = 1, #ids, 1000 do
  local chunk = redis.call('HMGET', KEYS[3], unpack(ids, start, math.min(start + 999, #ids)))
  for _, item in ipairs(chunk) do items[#items + 1] = item end
end
return {'ok', more, items}
""",
)

# KEYS: conv, conv-items;  ARGV: item id
CONVERSATION_ITEM = _script(
    "conversation_item",
    r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
return {'ok', redis.call('HGET', KEYS[2], ARGV[1])}
""",
)

# KEYS: conv, conv-order, conv-items;  ARGV: item id
CONVERSATION_DELETE_ITEM = _script(
    "conversation_delete_item",
    r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return {'missing'} end
redis.call('HDEL', KEYS[3], ARGV[1])
local row = redis.call('HMGET', KEYS[1], 'created', 'meta', 'project')
return {'ok', row[1], row[2], row[3]}
""",
)

# --- schema ---------------------------------------------------------------------------

# Bring the schema to ARGV[1]; answer the version found when it is newer (the store
# was written by a newer Tether). KEYS: schema
MIGRATE = _script(
    "migrate",
    r"""
local found = tonumber(redis.call('GET', KEYS[1]) or '0')
local target = tonumber(ARGV[1])
if found > target then return found end
if found < target then redis.call('SET', KEYS[1], target) end
return target
""",
)
