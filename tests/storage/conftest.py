"""The storage fixtures: every test that takes `storage` runs once per backend.

Backends come from `tests.support.stores.OPENERS` (name → async opener); adding
PostgreSQL or Redis there adds them to the whole contract suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stores import OPENERS, CreateResponse, new_response
from tether.storage.base import NewResponse, Storage


@pytest.fixture(params=list(OPENERS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await OPENERS[request.param](tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def create(storage: Storage) -> CreateResponse:
    """Create a response in `storage` (keyword arguments go to `new_response`)."""

    async def create(**kwargs: Any) -> NewResponse:
        new = new_response(**kwargs)
        await storage.responses.create(new)
        return new

    return create
