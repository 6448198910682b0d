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
    if scheme in ("postgresql", "postgres"):
        from tether.storage.postgres import open_postgres

        return await open_postgres(url)
    if scheme in ("redis", "rediss"):
        from tether.storage.redis import open_redis

        return await open_redis(url)
    if scheme == "memory":
        from tether.storage.memory import open_memory

        return open_memory()
    raise ConfigError(
        f"Unknown store URL scheme {scheme!r} in {url!r}: use sqlite:///path.db, "
        "postgresql://user@host/db, redis://host:6379/0 or memory://"
    )


async def migrate_storage(url: str) -> int:
    """Create or upgrade the backend's schema; returns its version. Safe to run while
    other processes use the store."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        from tether.storage.postgres import migrate

        return await migrate(url)
    if scheme in ("redis", "rediss"):
        from tether.storage.redis import migrate as migrate_redis

        return await migrate_redis(url)
    storage = await open_storage(url)  # SQLite migrates as it opens; memory has no schema
    try:
        return storage.schema_version
    finally:
        await storage.close()
