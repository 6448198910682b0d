"""Heartbeats follow the configured interval (1 s on the test server), whatever the
runner commits meanwhile."""

from __future__ import annotations

import time

import httpx
import openai

from tests.support.server import TetherProcess


def test_heartbeat_is_not_sent_per_commit_when_cursor_is_ahead(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    created = client.responses.create(model="very-slow", input="hi", background=True)
    try:
        url = f"{server.base_url}/responses/{created.id}?stream=true&starting_after=100000"
        keepalives = 0
        deadline = time.monotonic() + 2.5
        with httpx.stream("GET", url, timeout=10) as response:
            for line in response.iter_lines():
                if line.startswith(": keepalive"):
                    keepalives += 1
                assert not line.startswith("data:"), line
                if time.monotonic() > deadline:
                    break
        # The runner commits ~50 events in 2.5 s; heartbeats stay at one a second.
        assert 1 <= keepalives <= 4
    finally:
        client.responses.cancel(created.id)
