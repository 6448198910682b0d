"""The PostgreSQL schema: versioned migrations, applied under an advisory lock.

Every table lives in the store's own schema (`?schema=` of the URL), whose name is the
connection's `search_path`. `schema_version` records the migrations applied; `migrate`
applies the missing ones in one transaction while holding an advisory lock on the
schema's name, so several processes starting at once apply each
migration exactly once and the others wait, then find nothing to do.
"""

from __future__ import annotations

import zlib

import asyncpg

from tether.errors import ConfigError

# The first key of the advisory lock; the second is a hash of the schema name.
LOCK_CLASS = 0x7E7E

MIGRATIONS = [
    # Events live in one row per append: the frames of events first_seq..last_seq,
    # concatenated as sent (one index entry per batch, like the SQLite backend).
    # `responses.last_seq` is the head every compare-and-append checks under the row's
    # lock; the snapshot is the response as of event `snapshot_seq`, readers fold the
    # events after it. `rid` is the response row's integer id, never reused.
    """
    CREATE TABLE responses (
        rid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        status text NOT NULL,
        snapshot bytea NOT NULL,
        snapshot_seq integer NOT NULL,
        last_seq integer NOT NULL,
        conversation_cid bigint,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL
    ) WITH (fillfactor = 80);
    CREATE TABLE input_items (
        rid bigint NOT NULL,
        position integer NOT NULL,
        id text NOT NULL,
        item bytea NOT NULL,
        PRIMARY KEY (rid, position)
    );
    CREATE INDEX input_items_by_id ON input_items (rid, id);
    CREATE TABLE events (
        rid bigint NOT NULL,
        first_seq integer NOT NULL,
        last_seq integer NOT NULL,
        frames bytea NOT NULL,
        PRIMARY KEY (rid, last_seq)
    );
    CREATE TABLE jobs (
        job_no bigint GENERATED ALWAYS AS IDENTITY,
        response_id text PRIMARY KEY,
        owner text,
        lease_until double precision,
        attempts integer NOT NULL DEFAULT 0,
        payload bytea NOT NULL
    );
    CREATE INDEX jobs_unclaimed ON jobs (job_no) WHERE owner IS NULL;
    CREATE TABLE conversations (
        cid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        metadata bytea NOT NULL,
        created_at bigint NOT NULL
    );
    CREATE TABLE conversation_items (
        cid bigint NOT NULL,
        position integer NOT NULL,
        id text NOT NULL,
        item bytea NOT NULL,
        PRIMARY KEY (cid, position)
    );
    CREATE INDEX conversation_items_by_id ON conversation_items (cid, id);

    -- Add `p_ids`/`p_items` after the last item of conversation `p_cid` (locked by the
    -- caller), leaving out ids it already holds.
    CREATE FUNCTION add_conversation_items(p_cid bigint, p_ids text[], p_items bytea[])
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        v_last integer;
    BEGIN
        SELECT coalesce(max(position), -1) INTO v_last FROM conversation_items WHERE cid = p_cid;
        INSERT INTO conversation_items (cid, position, id, item)
        SELECT p_cid, v_last + row_number() OVER (ORDER BY o.k), o.id, o.item
        FROM unnest(p_ids, p_items) WITH ORDINALITY AS o(id, item, k)
        WHERE NOT EXISTS (
            SELECT 1 FROM conversation_items c WHERE c.cid = p_cid AND c.id = o.id
        );
    END $$;

    -- ResponseStore.create in one round trip. Writes nothing and answers
    -- conversation_found = false for an unknown conversation, or the ids of p_conv_ids
    -- the conversation already holds.
    CREATE FUNCTION create_response(
        p_id text, p_status text, p_snapshot bytea, p_first integer, p_last integer,
        p_frames bytea, p_created_at double precision, p_item_ids text[], p_items bytea[],
        p_job bytea, p_conversation text, p_conv_ids text[], p_conv_items bytea[],
        p_channel text, p_notice text,
        OUT conversation_found boolean, OUT present text[]
    ) LANGUAGE plpgsql AS $$
    DECLARE
        v_cid bigint;
        v_rid bigint;
    BEGIN
        conversation_found := true;
        present := '{}';
        IF p_conversation IS NOT NULL THEN
            SELECT cid INTO v_cid FROM conversations WHERE id = p_conversation FOR UPDATE;
            IF NOT FOUND THEN
                conversation_found := false;
                RETURN;
            END IF;
            SELECT coalesce(array_agg(id), '{}') INTO present
            FROM conversation_items WHERE cid = v_cid AND id = ANY(p_conv_ids);
            IF cardinality(present) > 0 THEN
                RETURN;
            END IF;
        END IF;
        INSERT INTO responses (id, status, snapshot, snapshot_seq, last_seq,
                               conversation_cid, created_at, updated_at)
        VALUES (p_id, p_status, p_snapshot, p_last, p_last, v_cid, p_created_at, p_created_at)
        RETURNING rid INTO v_rid;
        INSERT INTO input_items (rid, position, id, item)
        SELECT v_rid, i.k - 1, i.id, i.item
        FROM unnest(p_item_ids, p_items) WITH ORDINALITY AS i(id, item, k);
        INSERT INTO events (rid, first_seq, last_seq, frames)
        VALUES (v_rid, p_first, p_last, p_frames);
        INSERT INTO jobs (response_id, payload) VALUES (p_id, p_job);
        IF v_cid IS NOT NULL AND cardinality(p_conv_ids) > 0 THEN
            PERFORM add_conversation_items(v_cid, p_conv_ids, p_conv_items);
        END IF;
        PERFORM pg_notify(p_channel, p_notice);
    END $$;

    -- EventLog.append for a batch of appends to distinct responses, in one round trip
    -- and one transaction. Each append applies only when its response exists, is not
    -- terminal and its last event is p_firsts[i] - 1; the answer says which applied.
    -- Rows are locked in id order, so that concurrent batches never deadlock. A
    -- finished append drops the job; p_out_* hold the output items (p_out_ops: the
    -- append's index) that completed/incomplete appends add to their conversation.
    -- One notice per batch tells other processes: "<origin>" then "<id>:<last_seq>"
    -- lines (delivered at commit, so nobody hears of an uncommitted event).
    CREATE FUNCTION append_batch(
        p_ids text[], p_firsts integer[], p_lasts integer[], p_frames bytea[],
        p_snapshots bytea[], p_statuses text[], p_finished boolean[],
        p_out_ops integer[], p_out_ids text[], p_out_items bytea[],
        p_now double precision, p_channel text, p_origin text
    ) RETURNS boolean[] LANGUAGE plpgsql AS $$
    DECLARE
        v_rids bigint[];
        v_notice text;
        v_op record;
    BEGIN
        SELECT array_agg(r.rid ORDER BY b.n) INTO v_rids
        FROM unnest(p_ids, p_firsts) WITH ORDINALITY AS b(id, first_seq, n)
        LEFT JOIN (
            SELECT rid, id, status, last_seq FROM responses
            WHERE id = ANY(p_ids) ORDER BY id FOR UPDATE
        ) r ON r.id = b.id AND r.status IN ('queued', 'in_progress')
               AND r.last_seq = b.first_seq - 1;
        WITH ok AS (
            SELECT * FROM unnest(v_rids, p_ids, p_firsts, p_lasts, p_frames, p_snapshots,
                                 p_statuses, p_finished)
                AS b(rid, id, first_seq, last_seq, frames, snapshot, status, finished)
            WHERE b.rid IS NOT NULL
        ), inserted AS (
            INSERT INTO events (rid, first_seq, last_seq, frames)
            SELECT rid, first_seq, last_seq, frames FROM ok
        ), updated AS (
            UPDATE responses r SET
                last_seq = ok.last_seq,
                status = ok.status,
                snapshot = coalesce(ok.snapshot, r.snapshot),
                snapshot_seq = CASE WHEN ok.snapshot IS NULL THEN r.snapshot_seq
                                    ELSE ok.last_seq END,
                updated_at = p_now
            FROM ok WHERE r.rid = ok.rid
        )
        DELETE FROM jobs j USING ok WHERE ok.finished AND j.response_id = ok.id;
        IF cardinality(p_out_ops) > 0 THEN
            FOR v_op IN
                SELECT o.n, r.conversation_cid AS cid
                FROM unnest(v_rids) WITH ORDINALITY AS o(rid, n)
                JOIN responses r ON r.rid = o.rid
                WHERE r.conversation_cid IS NOT NULL AND o.n = ANY(p_out_ops)
                ORDER BY r.conversation_cid, o.n
            LOOP
                PERFORM 1 FROM conversations WHERE cid = v_op.cid FOR UPDATE;
                IF FOUND THEN
                    PERFORM add_conversation_items(
                        v_op.cid,
                        ARRAY(SELECT x.id FROM unnest(p_out_ops, p_out_ids)
                              WITH ORDINALITY AS x(op, id, k) WHERE x.op = v_op.n ORDER BY x.k),
                        ARRAY(SELECT x.item FROM unnest(p_out_ops, p_out_items)
                              WITH ORDINALITY AS x(op, item, k) WHERE x.op = v_op.n ORDER BY x.k)
                    );
                END IF;
            END LOOP;
        END IF;
        FOR v_notice IN
            SELECT string_agg(b.id || ':' || b.last_seq, E'\\n')
            FROM (
                SELECT id, last_seq, (row_number() OVER () - 1) / 64 AS chunk
                FROM unnest(v_rids, p_ids, p_lasts) AS u(rid, id, last_seq)
                WHERE rid IS NOT NULL
            ) b GROUP BY b.chunk
        LOOP
            PERFORM pg_notify(p_channel, p_origin || E'\\n' || v_notice);
        END LOOP;
        RETURN ARRAY(SELECT rid IS NOT NULL FROM unnest(v_rids) AS u(rid));
    END $$;
    """,
    # Migration 3 — projects and API keys: every response and conversation belongs to
    # a project (rows written before belong to 'default'); `create_response` takes the
    # new response's project last. Keys are stored as the SHA-256 of their secret
    # (`apikeys.py`), found by their id.
    """
    ALTER TABLE responses ADD COLUMN project text NOT NULL DEFAULT 'default';
    ALTER TABLE conversations ADD COLUMN project text NOT NULL DEFAULT 'default';
    CREATE TABLE api_keys (
        id text PRIMARY KEY,
        project text NOT NULL,
        name text,
        digest bytea NOT NULL,
        created_at double precision NOT NULL,
        revoked_at double precision
    );
    DROP FUNCTION create_response(
        text, text, bytea, integer, integer, bytea, double precision, text[], bytea[],
        bytea, text, text[], bytea[], text, text
    );
    CREATE FUNCTION create_response(
        p_id text, p_status text, p_snapshot bytea, p_first integer, p_last integer,
        p_frames bytea, p_created_at double precision, p_item_ids text[], p_items bytea[],
        p_job bytea, p_conversation text, p_conv_ids text[], p_conv_items bytea[],
        p_channel text, p_notice text, p_project text,
        OUT conversation_found boolean, OUT present text[]
    ) LANGUAGE plpgsql AS $$
    DECLARE
        v_cid bigint;
        v_rid bigint;
    BEGIN
        conversation_found := true;
        present := '{}';
        IF p_conversation IS NOT NULL THEN
            SELECT cid INTO v_cid FROM conversations WHERE id = p_conversation FOR UPDATE;
            IF NOT FOUND THEN
                conversation_found := false;
                RETURN;
            END IF;
            SELECT coalesce(array_agg(id), '{}') INTO present
            FROM conversation_items WHERE cid = v_cid AND id = ANY(p_conv_ids);
            IF cardinality(present) > 0 THEN
                RETURN;
            END IF;
        END IF;
        INSERT INTO responses (id, status, snapshot, snapshot_seq, last_seq,
                               conversation_cid, created_at, updated_at, project)
        VALUES (p_id, p_status, p_snapshot, p_last, p_last, v_cid, p_created_at, p_created_at,
                p_project)
        RETURNING rid INTO v_rid;
        INSERT INTO input_items (rid, position, id, item)
        SELECT v_rid, i.k - 1, i.id, i.item
        FROM unnest(p_item_ids, p_items) WITH ORDINALITY AS i(id, item, k);
        INSERT INTO events (rid, first_seq, last_seq, frames)
        VALUES (v_rid, p_first, p_last, p_frames);
        INSERT INTO jobs (response_id, payload) VALUES (p_id, p_job);
        IF v_cid IS NOT NULL AND cardinality(p_conv_ids) > 0 THEN
            PERFORM add_conversation_items(v_cid, p_conv_ids, p_conv_items);
        END IF;
        PERFORM pg_notify(p_channel, p_notice);
    END $$;
    """,
    # Migration 4 — Idempotency-Key claims: (project, key) → the response created with
    # it and the hash of its request body, until `expires_at` (unix time). Claimed in
    # the response's own transaction (`claims.py`); lapsed rows are removed by later
    # claims.
    """
    CREATE TABLE idempotency_keys (
        project text NOT NULL,
        key text NOT NULL,
        response_id text NOT NULL,
        body_hash bytea NOT NULL,
        expires_at double precision NOT NULL,
        PRIMARY KEY (project, key)
    );
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
    """,
    # Migration 5 — retention (`retention.py`): a terminal response's `updated_at` is
    # when it finished (nothing updates it after). Candidates are found by
    # `created_at`, which appends never change, so their updates stay HOT; a response
    # finishes after it was created. `events_expired` is set once its event log was
    # dropped and its snapshot folded to the end.
    """
    ALTER TABLE responses ADD COLUMN events_expired boolean NOT NULL DEFAULT false;
    CREATE INDEX responses_by_created ON responses (created_at);
    CREATE INDEX responses_logs_kept ON responses (created_at) WHERE NOT events_expired;
    """,
]

LATEST = len(MIGRATIONS)


def quote(name: str) -> str:
    """A schema name (already checked to be a plain identifier), quoted for SQL."""
    return '"' + name.replace('"', '""') + '"'


async def installed_version(conn: asyncpg.Connection, schema: str) -> int:
    """The schema's version: 0 when it (or its version table) does not exist yet."""
    exists = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{quote(schema)}.schema_version"
    )
    if not exists:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {quote(schema)}.schema_version")
    return int(version or 0)


async def apply_migrations(conn: asyncpg.Connection, schema: str) -> int:
    """Bring `schema` to the latest version (creating it if needed); return the version.

    Raises `ConfigError` when the database holds a newer schema than this code knows."""
    key = zlib.crc32(schema.encode()) - (1 << 31)  # as a signed 32-bit integer
    # A session lock taken before the transaction begins: a transaction that began
    # before another process's migration committed could still see the catalog as it
    # was, and create the tables again.
    await conn.execute("SELECT pg_advisory_lock($1, $2)", LOCK_CLASS, key)
    try:
        async with conn.transaction():
            version = await installed_version(conn, schema)
            check_known(schema, version)
            if version == LATEST:
                return version
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            await conn.execute(f"SET LOCAL search_path TO {quote(schema)}")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, key)
    return LATEST


def check_known(schema: str, version: int) -> None:
    if version > LATEST:
        raise ConfigError(
            f"The PostgreSQL schema {schema!r} is at version {version}, newer than this "
            f"Tether knows ({LATEST}): upgrade Tether, or point --store at another schema."
        )
