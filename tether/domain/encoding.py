"""JSON bytes that are kept: right-sized.

`orjson.dumps` returns bytes whose allocation keeps orjson's whole output buffer
(about 4 KB of resident memory even for a 50-byte document). That is harmless for
bytes that are sent and dropped, but every snapshot or job payload a process holds
for a live response would cost a page. `dumps` copies the result to its exact size.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """`orjson.dumps(value)` at its exact size (for bytes that are retained)."""
    return b"%b" % orjson.dumps(value)
