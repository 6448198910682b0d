"""Shared fixtures: the mock Chat Completions and Responses upstreams, real `tether serve`
processes, and `openai` SDK clients pointed at them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.support.mock_chat import run_mock_chat
from tests.support.mock_responses import run_mock_responses
from tests.support.server import TetherProcess, models_toml


@pytest.fixture(scope="session")
def mock_chat_url() -> Iterator[str]:
    """Base URL (`http://127.0.0.1:PORT/v1`) of a mock Chat Completions upstream."""
    with run_mock_chat() as url:
        yield url


@pytest.fixture(scope="session")
def mock_responses_url() -> Iterator[str]:
    """Base URL (`http://127.0.0.1:PORT/v1`) of a mock Responses API upstream."""
    with run_mock_responses() as url:
        yield url


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, mock_chat_url: str, mock_responses_url: str
) -> Iterator[TetherProcess]:
    """One Tether process shared by the tests that do not restart or kill it."""
    config = models_toml(mock_chat_url, mock_responses_url)
    process = TetherProcess(tmp_path_factory.mktemp("tether"), config)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def client(server: TetherProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)


@pytest.fixture
def make_server(
    tmp_path: Path, mock_chat_url: str, mock_responses_url: str
) -> Iterator[Callable[..., TetherProcess]]:
    """A factory of private Tether processes (for crash and restart tests)."""
    started: list[TetherProcess] = []

    def make(config: str | None = None, **env: str) -> TetherProcess:
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        process = TetherProcess(
            workdir, config or models_toml(mock_chat_url, mock_responses_url), env
        )
        process.start()
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()
