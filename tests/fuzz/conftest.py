"""A Tether process for the fuzz tests, serving only models that answer at once, so a
generated request that passes validation finishes in milliseconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import TetherProcess

FUZZ_MODELS = """
[[models]]
name = "fake"
provider = "fake"
output_tokens = 6

[[models]]
name = "echo"
provider = "fake"
mode = "echo"

[[models]]
name = "reasoner"
provider = "fake"
output_tokens = 4
reasoning = true

[[models]]
name = "failing"
provider = "fake"
output_tokens = 6
fail_after_tokens = 2

[[models]]
name = "slow"
provider = "fake"
output_tokens = 200
tokens_per_second = 50
"""
MODELS = ("fake", "echo", "reasoner", "failing")  # the ones that answer at once


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherProcess]:
    process = TetherProcess(tmp_path_factory.mktemp("fuzz"), FUZZ_MODELS)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def fuzz_origin(fuzz_server: TetherProcess) -> str:
    """`http://127.0.0.1:PORT`: the document's paths start with `/v1` themselves."""
    return f"http://127.0.0.1:{fuzz_server.port}"
