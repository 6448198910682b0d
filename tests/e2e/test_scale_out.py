"""Scale-out on PostgreSQL and Redis: 2 API replicas (`serve --no-worker`) and 2
workers (`tether worker`) as separate OS processes on one shared store.

A client resumes on any replica; a cancel on any replica reaches the worker; a
killed worker's responses are continued by the other one (the fake model continues
deterministically) with gapless, duplicate-free logs; a killed API replica costs its
clients nothing but a reconnect to the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.frames import FrameReader, event_of
from tests.support.server import TetherProcess
from tests.support.services import POSTGRES_URL, REDIS_URL, require_service, unique_name
from tether.providers.fake import LOREM

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(15.0)
TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset(f"response.{status}" for status in TERMINAL)
STEADY_TOKENS = 40
STEADY_TEXT = " ".join(LOREM[i % len(LOREM)] for i in range(STEADY_TOKENS))
MODELS = f"""
[[models]]
name = "fake"
provider = "fake"

[[models]]
name = "steady"
provider = "fake"
output_tokens = {STEADY_TOKENS}
tokens_per_second = 20

[[models]]
name = "endless"
provider = "fake"
output_tokens = 100000
tokens_per_second = 10
"""
ENV = {
    "TETHER_SWEEP_SECONDS": "0.5",
    "TETHER_LEASE_SECONDS": "6",
    "TETHER_JOB_ATTEMPTS": "20",
    "TETHER_SHUTDOWN_GRACE_SECONDS": "1",
}


# --- the cluster ----------------------------------------------------------------------


@dataclass
class Cluster:
    backend: str
    store: str
    apis: list[TetherProcess]
    workers: list[TetherProcess]

    @property
    def a(self) -> TetherProcess:
        return self.apis[0]

    @property
    def b(self) -> TetherProcess:
        return self.apis[1]


def _store_url(backend: str, namespace: str) -> str:
    if backend == "postgres":
        require_service("PostgreSQL", POSTGRES_URL)
        return f"{POSTGRES_URL}?schema={namespace}"
    require_service("Redis", REDIS_URL)
    return f"{REDIS_URL}?prefix={namespace}"


def _drop(backend: str, namespace: str) -> None:
    async def drop() -> None:
        if backend == "postgres":
            import asyncpg

            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
            finally:
                await conn.close()
        else:
            import redis.asyncio as aioredis

            client = aioredis.from_url(REDIS_URL)
            try:
                keys = [key async for key in client.scan_iter(f"{namespace}*", count=1000)]
                for start in range(0, len(keys), 500):
                    await client.unlink(*keys[start : start + 500])
            finally:
                await client.aclose()

    asyncio.run(drop())


@pytest.fixture(params=["postgres", "redis"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    backend: str = request.param
    namespace = unique_name("tether_e2e")
    store = _store_url(backend, namespace)
    processes: list[TetherProcess] = []

    def process(role: str, name: str) -> TetherProcess:
        started = TetherProcess(tmp_path, MODELS, ENV, store=store, role=role, name=name)
        processes.append(started)
        return started

    cluster = Cluster(
        backend,
        store,
        [process("api", "api-a"), process("api", "api-b")],
        [process("worker", "worker-1"), process("worker", "worker-2")],
    )
    try:
        for started in processes:
            started.start()
        yield cluster
    finally:
        for started in processes:
            with contextlib.suppress(Exception):
                started.stop()
        _drop(backend, namespace)


# --- HTTP helpers -------------------------------------------------------------------------


def post(server: TetherProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.base_url}/responses", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def snapshot(server: TetherProcess, response_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/responses/{response_id}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def replay(server: TetherProcess, response_id: str, after: int | None = None) -> list[bytes]:
    params = {"stream": "true"}
    if after is not None:
        params["starting_after"] = str(after)
    url = f"{server.base_url}/responses/{response_id}"
    with httpx.stream("GET", url, params=params, timeout=TIMEOUT) as response:
        assert response.status_code == 200, response.read()
        reader = FrameReader(response)
        reader.read()
    assert reader.done, "a replay of a finished response ends with [DONE]"
    return reader.frames


def wait_terminal(server: TetherProcess, response_id: str, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        current = snapshot(server, response_id)
        if current["status"] in TERMINAL:
            return current
        if time.monotonic() > deadline:
            pytest.fail(f"{response_id} is still {current['status']} after {seconds} s")
        time.sleep(0.1)


def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.05)


def assert_whole_log(frames: list[bytes]) -> list[dict[str, Any]]:
    """Gapless from 0, no duplicate, exactly one terminal event, last."""
    events = [event_of(frame) for frame in frames]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert [e["type"] in TERMINAL_EVENTS for e in events].count(True) == 1
    assert events[-1]["type"] in TERMINAL_EVENTS
    return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


# --- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("background", [False, True])
def test_stream_on_a_resumes_on_b_identically(cluster: Cluster, background: bool) -> None:
    body = {"model": "steady", "input": "hi", "stream": True, "background": background}
    with httpx.stream("POST", f"{cluster.a.base_url}/responses", json=body, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        seen = FrameReader(r).read(8)[:8]
    response_id = event_of(seen[0])["response"]["id"]

    url = f"{cluster.b.base_url}/responses/{response_id}"
    params = {"stream": "true", "starting_after": "7"}
    with httpx.stream("GET", url, params=params, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        rest = FrameReader(r)
        rest.read()
    assert rest.done

    events = assert_whole_log(seen + rest.frames)
    assert events[-1]["type"] == "response.completed"
    assert text_of(events) == STEADY_TEXT
    assert replay(cluster.a, response_id) == seen + rest.frames
    assert replay(cluster.b, response_id) == seen + rest.frames


def test_cancel_on_b_stops_the_worker_running_it(cluster: Cluster) -> None:
    created = post(cluster.a, {"model": "endless", "input": "x", "background": True})
    response_id = created["id"]
    until(lambda: len(snapshot(cluster.b, response_id)["output"]) > 0)

    cancelled = httpx.post(f"{cluster.b.base_url}/responses/{response_id}/cancel", timeout=TIMEOUT)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"

    frames = replay(cluster.a, response_id)
    events = assert_whole_log(frames)
    assert events[-1]["type"] == "response.cancelled"
    # The worker stopped: nothing is appended after the cancel (a late append would be
    # refused by the store anyway; this checks the runner is gone, within a second).
    time.sleep(1.0)
    assert replay(cluster.b, response_id) == frames
    assert snapshot(cluster.a, response_id)["status"] == "cancelled"


def test_cancels_racing_completion_end_each_response_once(cluster: Cluster) -> None:
    rng = random.Random(7)
    ids = [
        post(cluster.a, {"model": "steady", "input": f"r{i}", "background": True})["id"]
        for i in range(10)
    ]
    for response_id in ids:
        time.sleep(rng.uniform(0, 0.3))
        httpx.post(f"{cluster.b.base_url}/responses/{response_id}/cancel", timeout=TIMEOUT)
    for response_id in ids:
        final = wait_terminal(cluster.a, response_id)
        assert final["status"] in ("cancelled", "completed")
        events = assert_whole_log(replay(cluster.b, response_id))
        assert events[-1]["response"]["status"] == final["status"]
        again = snapshot(cluster.b, response_id)
        assert again["status"] == final["status"]  # terminal states never change


def test_killed_workers_responses_continue_gaplessly(cluster: Cluster) -> None:
    rng = random.Random(11)
    ids = [
        post(cluster.apis[i % 2], {"model": "steady", "input": f"chaos {i}", "background": True})[
            "id"
        ]
        for i in range(50)
    ]
    for _ in range(3):
        time.sleep(rng.uniform(0.3, 0.8))
        victim = cluster.workers[rng.randrange(2)]
        victim.kill()
        time.sleep(rng.uniform(0.1, 0.4))
        victim.start()

    for response_id in ids:
        final = wait_terminal(cluster.apis[rng.randrange(2)], response_id, 60.0)
        events = assert_whole_log(replay(cluster.b, response_id))
        assert final["status"] == "completed", final
        assert text_of(events) == STEADY_TEXT
        types = [e["type"] for e in events]
        assert types.count("response.in_progress") == 1
        assert types.count("response.output_item.added") == 1
        assert events[-1]["response"] == snapshot(cluster.a, response_id) == final
    # The kills hit running jobs, which the sweepers handed on.
    logs = b"".join(worker.log_path.read_bytes() for worker in cluster.workers)
    assert b"handed on" in logs


def test_killed_api_replica_clients_resume_on_the_other(cluster: Cluster) -> None:
    body = {"model": "steady", "input": "through a", "stream": True}
    with httpx.stream("POST", f"{cluster.a.base_url}/responses", json=body, timeout=TIMEOUT) as r:
        reader = FrameReader(r)
        reader.read(6)
        cluster.a.kill()
        with contextlib.suppress(httpx.TransportError):
            reader.read()
    seen = reader.frames
    assert not reader.done
    response_id = event_of(seen[0])["response"]["id"]

    url = f"{cluster.b.base_url}/responses/{response_id}"
    params = {"stream": "true", "starting_after": str(len(seen) - 1)}
    with httpx.stream("GET", url, params=params, timeout=TIMEOUT) as r:
        rest = FrameReader(r)
        rest.read()
    events = assert_whole_log(seen + rest.frames)
    assert events[-1]["type"] == "response.completed"
    assert text_of(events) == STEADY_TEXT
    cluster.a.start()
