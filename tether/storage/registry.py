"""Store URL → backend. The scheme picks the module, imported only when used, so an
optional backend's driver is needed only by those who choose it."""

from __future__ import annotations

from tether.errors import ConfigError
from tether.storage.base import Storage


async def open_storage(url: str, *, sqlite_synchronous: str = "NORMAL") -> Storage:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from tether.storage.sqlite import open_sqlite

        return await open_sqlite(url, synchronous=sqlite_synchronous)
    if scheme == "memory":
        from tether.storage.memory import open_memory

        return open_memory()
    raise ConfigError(
        f"Unknown store URL scheme {scheme!r} in {url!r}: use sqlite:///path.db or memory://"
    )
