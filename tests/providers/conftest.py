"""Fixtures for provider tests. `mock_chat_url` belongs in tests/conftest.py once that
exists, so that API and end-to-end tests can share the mock upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mock_chat import run_mock_chat


@pytest.fixture(scope="session")
def mock_chat_url() -> Iterator[str]:
    """Base URL (`http://127.0.0.1:PORT/v1`) of a mock Chat Completions upstream."""
    with run_mock_chat() as url:
        yield url
