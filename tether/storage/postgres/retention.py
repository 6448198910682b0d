"""Retention in PostgreSQL: the statements of `PostgresResponseStore.expire`, which
deletes responses that finished long ago and drops the event logs of those that
finished a while ago. Rows are taken with `FOR UPDATE SKIP LOCKED`, so workers
running it at once split the work and never touch a row twice."""

from __future__ import annotations

# Finished before $1 (`updated_at` of a terminal row); found through `created_at`
# (indexed), since a response is created before it finishes.
_FINISHED = (
    "created_at < $1 AND updated_at < $1 "
    "AND status IN ('completed', 'incomplete', 'failed', 'cancelled') "
)

# $1: finished before, $2: limit → the ids deleted (with events, items and claims).
DELETE_FINISHED = (
    "WITH doomed AS (SELECT rid, id FROM responses WHERE " + _FINISHED + "ORDER BY created_at "
    "LIMIT $2 FOR UPDATE SKIP LOCKED), "
    "items AS (DELETE FROM input_items i USING doomed d WHERE i.rid = d.rid), "
    "events AS (DELETE FROM events e USING doomed d WHERE e.rid = d.rid), "
    "claims AS (DELETE FROM idempotency_keys k USING doomed d WHERE k.response_id = d.id), "
    "gone AS (DELETE FROM responses r USING doomed d WHERE r.rid = d.rid RETURNING r.id) "
    "SELECT id FROM gone"
)

# $1: finished before, $2: limit → (rid, id) of logs to drop, locked.
OLD_LOGS = (
    "SELECT rid, id FROM responses WHERE " + _FINISHED + "AND NOT events_expired "
    "ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED"
)

# $1: rid, $2: the snapshot folded to the last event.
DROP_LOG = (
    "WITH dropped AS (DELETE FROM events WHERE rid = $1) UPDATE responses SET "
    "snapshot = $2, snapshot_seq = last_seq, events_expired = true WHERE rid = $1"
)
