"""Idempotency-Key claims in PostgreSQL (table `idempotency_keys`): taken by
`ResponseStore.create` in the transaction that writes the response.

The claim is an `INSERT … ON CONFLICT DO UPDATE … WHERE lapsed`: of two transactions
claiming one key, the second waits on the first's uncommitted row, then finds it
(committed: held; rolled back: free), so exactly one response gets the key.
"""

from __future__ import annotations

import time
from typing import Any

from tether.errors import StorageError
from tether.storage.base import IdempotencyClaim, IdempotencyConflictError

SWEEP_LIMIT = 64  # lapsed claims removed per new claim

# $1 project, $2 key, $3 response id, $4 body hash, $5 expires_at, $6 now. Answers a
# row when the key was claimed, none when an unlapsed claim holds it (that row is then
# locked by this transaction). The sweep skips rows other transactions hold.
_CLAIM = f"""
WITH lapsed AS (
    DELETE FROM idempotency_keys WHERE (project, key) IN (
        SELECT project, key FROM idempotency_keys
        WHERE expires_at <= $6 AND NOT (project = $1 AND key = $2)
        ORDER BY expires_at LIMIT {SWEEP_LIMIT} FOR UPDATE SKIP LOCKED
    )
)
INSERT INTO idempotency_keys AS k (project, key, response_id, body_hash, expires_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (project, key) DO UPDATE
    SET response_id = excluded.response_id, body_hash = excluded.body_hash,
        expires_at = excluded.expires_at
    WHERE k.expires_at <= $6
RETURNING 1
"""

_HELD = "SELECT response_id, body_hash FROM idempotency_keys WHERE project = $1 AND key = $2"


async def claim_key(conn: Any, project: str, claim: IdempotencyClaim, response_id: str) -> None:
    """Claim the key in `project` for `response_id` on `conn` (inside a transaction),
    or raise `IdempotencyConflictError` with the claim that holds it."""
    claimed = await conn.fetchval(
        _CLAIM,
        project,
        claim.key,
        response_id,
        claim.body_hash,
        claim.expires_at,
        time.time(),
    )
    if claimed is not None:
        return
    # A new statement: it sees the claim committed while the INSERT waited for it.
    held = await conn.fetchrow(_HELD, project, claim.key)
    if held is None:
        raise StorageError(f"idempotency key {claim.key!r} was neither free nor held")
    raise IdempotencyConflictError(held[0], bytes(held[1]))
