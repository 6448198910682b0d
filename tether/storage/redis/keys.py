"""The names of Tether's Redis keys and pub/sub channels under one prefix.

    <p>:schema                      string   schema version (`migrate`)
    <p>:counters                    hash     `jobs` (queue order), `conversations` (generations)
    <p>:resp:<id>                   hash     status, snap, snap_seq, last, created, conv,
                                             project (absent: written before projects)
    <p>:events:<id>                 stream   one entry per append: id `<last_seq>-<count>`,
                                             field `f` = the batch's SSE frames, concatenated
    <p>:input:<id>                  list     the input items (JSON), in order
    <p>:input-index:<id>            hash     input item id → its position in the list
    <p>:job:<id>                    hash     payload, attempts, order
    <p>:jobs:queued                 zset     unclaimed jobs, scored by `order` (FIFO)
    <p>:jobs:leases                 hash     claimed job → "<lease_until> <owner>"
    <p>:conv:<id>                   hash     created, meta, gen, next (next position),
                                             project (absent: written before projects)
    <p>:conv-order:<id>             zset     item id, scored by position
    <p>:conv-items:<id>             hash     item id → item JSON
    <p>:idem:<n>:<project>:<key>    hash     response, hash: an Idempotency-Key claim (n =
                                             the project's length), with a TTL to its lapse
    <p>:apikey:<id>                 hash     project, name, digest (SHA-256 of the secret),
                                             created, revoked: an API key (`apikeys.py`)
    <p>:apikeys                     zset     API key ids, scored by creation time
    <p>:finished                    zset     finished responses, scored by when they
                                             finished (unix seconds; `retention.py`)
    <p>:logs                        zset     the finished responses whose event log is
                                             still kept, scored the same way
    <p>:resp:<id> field `expired`            set once its event log was dropped

    channels: <p>:wake:<id> (a commit: "<last_seq> <count>[ end]\n<frames>", or "gone"),
              <p>:jobs (a job was queued), <p>:revoked ("<origin> <id>": a job was removed
              by terminate or delete)

The Lua scripts (`scripts.py`) build the same names from the prefix; keep both in step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    @property
    def schema(self) -> str:
        return f"{self.prefix}:schema"

    @property
    def counters(self) -> str:
        return f"{self.prefix}:counters"

    @property
    def queued(self) -> str:
        return f"{self.prefix}:jobs:queued"

    @property
    def leases(self) -> str:
        return f"{self.prefix}:jobs:leases"

    def response(self, response_id: str) -> str:
        return f"{self.prefix}:resp:{response_id}"

    def events(self, response_id: str) -> str:
        return f"{self.prefix}:events:{response_id}"

    def input(self, response_id: str) -> str:
        return f"{self.prefix}:input:{response_id}"

    def input_index(self, response_id: str) -> str:
        return f"{self.prefix}:input-index:{response_id}"

    def job(self, response_id: str) -> str:
        return f"{self.prefix}:job:{response_id}"

    def conversation(self, conversation_id: str) -> str:
        return f"{self.prefix}:conv:{conversation_id}"

    def conversation_order(self, conversation_id: str) -> str:
        return f"{self.prefix}:conv-order:{conversation_id}"

    def conversation_items(self, conversation_id: str) -> str:
        return f"{self.prefix}:conv-items:{conversation_id}"

    def api_key(self, key_id: str) -> str:
        return f"{self.prefix}:apikey:{key_id}"

    @property
    def finished(self) -> str:
        return f"{self.prefix}:finished"

    @property
    def logs(self) -> str:
        return f"{self.prefix}:logs"

    @property
    def api_keys(self) -> str:
        return f"{self.prefix}:apikeys"

    def idempotency(self, project: str, key: str) -> str:
        # The length keeps project "a:b" + key "c" apart from project "a" + key "b:c".
        return f"{self.prefix}:idem:{len(project)}:{project}:{key}"

    # --- channels ---

    @property
    def wake_prefix(self) -> bytes:
        return f"{self.prefix}:wake:".encode()

    @property
    def jobs_channel(self) -> bytes:
        return f"{self.prefix}:jobs".encode()

    @property
    def revoked_channel(self) -> bytes:
        return f"{self.prefix}:revoked".encode()
