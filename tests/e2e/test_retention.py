"""Retention against a real `tether serve` with tiny retention periods: a finished
response's event log expires first (resuming its stream answers 400
`stream_expired`, while GET still returns it), then the response itself (404)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.support.server import TetherProcess

DEADLINE = 15.0  # seconds a retention step may take before the test fails
RETENTION_ENV = {
    "TETHER_RETENTION_EVENT_LOGS_SECONDS": "1",
    "TETHER_RETENTION_RESPONSES_SECONDS": "3",
    "TETHER_SWEEP_SECONDS": "0.2",
}


def resume(server: TetherProcess, response_id: str) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/responses/{response_id}",
        params={"stream": "true"},
        headers={"Authorization": "Bearer unused"},
        timeout=10.0,
    )


def until(check: Callable[[], httpx.Response], status: int) -> httpx.Response:
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = check()
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_event_log_then_response_expire(make_server: Callable[..., TetherProcess]) -> None:
    server = make_server(**RETENTION_ENV)
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    response = client.responses.create(model="fake", input="hi")
    assert response.status == "completed"
    fresh = resume(server, response.id)
    assert fresh.status_code == 200
    assert "response.completed" in fresh.text

    expired = until(lambda: resume(server, response.id), 400)

    assert expired.status_code == 400, expired.text
    error = expired.json()["error"]
    assert error["code"] == "stream_expired"
    assert "retention" in error["message"]
    assert f"GET /v1/responses/{response.id}" in error["message"]
    kept = client.responses.retrieve(response.id)
    assert (kept.status, kept.output_text) == ("completed", response.output_text)

    gone = until(lambda: resume(server, response.id), 404)

    assert gone.status_code == 404, gone.text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
