"""Idempotency-Key claims in SQLite: checked and written by `ResponseStore.create` on
the writer thread, inside the response's own transaction (table `idempotency_keys`)."""

from __future__ import annotations

import sqlite3
import time

from tether.storage.base import IdempotencyClaim, IdempotencyConflictError

SWEEP_LIMIT = 64  # lapsed claims removed per new claim


def check_claim(conn: sqlite3.Connection, project: str, claim: IdempotencyClaim) -> None:
    """Raise `IdempotencyConflictError` when the key is held and has not lapsed.

    Reads only, so a create refused here writes nothing."""
    row = conn.execute(
        "SELECT response_id, body_hash FROM idempotency_keys "
        "WHERE project = ? AND key = ? AND expires_at > ?",
        (project, claim.key, time.time()),
    ).fetchone()
    if row is not None:
        raise IdempotencyConflictError(row[0], bytes(row[1]))


def write_claim(
    conn: sqlite3.Connection, project: str, claim: IdempotencyClaim, response_id: str
) -> None:
    """Claim the key in `project` for `response_id` (replacing a lapsed claim), and
    remove a few other lapsed claims."""
    now = time.time()
    conn.execute(
        "DELETE FROM idempotency_keys WHERE (project, key) IN (SELECT project, key "
        "FROM idempotency_keys WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
        (now, SWEEP_LIMIT),
    )
    conn.execute(
        "INSERT OR REPLACE INTO idempotency_keys (project, key, response_id, body_hash, "
        "expires_at) VALUES (?, ?, ?, ?, ?)",
        (project, claim.key, response_id, claim.body_hash, claim.expires_at),
    )
