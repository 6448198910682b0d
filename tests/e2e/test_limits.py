"""Server limits (issue #7): body size, input items, a model's output ceiling and the
longest generation — each a clear error naming the limit."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest

from tests.support.server import TetherProcess

MakeServer = Callable[..., TetherProcess]

MODELS = """
[[models]]
name = "capped"
provider = "fake"
output_tokens = 100
max_output_tokens = 20

[[models]]
name = "slow"
provider = "fake"
output_tokens = 400
tokens_per_second = 20
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> TetherProcess:
    process = TetherProcess(
        tmp_path_factory.mktemp("limits"),
        MODELS,
        {
            "TETHER_MAX_BODY_BYTES": "4000",
            "TETHER_MAX_INPUT_ITEMS": "3",
            "TETHER_MAX_GENERATION_SECONDS": "0.5",
        },
    )
    process.start()
    yield process
    process.stop()


def client_of(server: TetherProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_a_body_over_the_limit_is_a_413(limited: TetherProcess) -> None:
    body = {"model": "capped", "input": "x" * 5000}
    response = httpx.post(f"{limited.base_url}/responses", json=body, timeout=10)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert "max_body_bytes" in error["message"]


def test_a_chunked_body_over_the_limit_is_a_413(limited: TetherProcess) -> None:
    def chunks() -> object:
        yield b'{"model": "capped", "input": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = httpx.post(
        f"{limited.base_url}/responses",
        content=chunks(),  # type: ignore[arg-type]
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413


def test_too_many_input_items_is_a_400(limited: TetherProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client_of(limited).responses.create(
            model="capped", input=[{"role": "user", "content": str(i)} for i in range(4)]
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "input"
    assert "max_input_items" in caught.value.message


def test_a_models_output_ceiling(limited: TetherProcess) -> None:
    client = client_of(limited)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="capped", input="hi", max_output_tokens=30)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "max_output_tokens"
    assert "at most 20" in caught.value.message
    # Without max_output_tokens the ceiling is the limit.
    response = client.responses.create(model="capped", input="hi")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 20
    assert response.max_output_tokens is None  # echoed as asked


def test_a_response_generating_too_long_fails_clearly(limited: TetherProcess) -> None:
    response = client_of(limited).responses.create(model="slow", input="hi")
    assert response.status == "failed"
    assert response.error is not None
    assert "max_generation_seconds" in response.error.message
    assert response.output_text  # the partial output is kept
