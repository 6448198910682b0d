"""PostgreSQL and Redis restarted under live streams: a private server of each (never
the shared ones), crashed and started again while an API replica (`serve --no-worker`)
streams responses that a separate `tether worker` generates — so wake-ups cross
processes through LISTEN/NOTIFY or pub/sub, which must come back with the server.

Every in-flight response either completes or ends `failed` with a clear storage error
(never a hang, a cut body or a 500); its stored log, read back from 0, is gapless with
one terminal event, and what each live client received is that log's prefix, event for
event. After the restart the same processes serve new responses.

- A short restart (down for `DOWN_SECONDS`) is ridden out: the worker sends its
  appends again once the server is back, the streams go on, every response completes.
- A long one (down past `store_outage_seconds`) is not: the live streams end with a
  clear `error` frame; once the server is back, the responses are continued from their
  stored logs (their leases ran out) and complete, whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.faults.conftest import Tally
from tests.faults.live import Checked, LiveStream, check_against_log, generating, start_stream
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.server import TetherProcess
from tests.support.services import unique_name
from tether.providers.fake import LOREM

pytestmark = pytest.mark.faults

TOKENS = 60
TOKENS_PER_SECOND = 30  # two seconds a response: the restart lands mid-stream
STREAMS = 4
DOWN_SECONDS = 0.5  # a short restart, ridden out
OUTAGE_SECONDS = 0.5  # the servers' store_outage_seconds in the long-restart test
# A restart well past that, even for a Redis tail, which only finds the server gone
# when it reads (after a heartbeat without news: 0.25 s there).
LONG_DOWN_SECONDS = 2.0
TEXT = " ".join(LOREM[i % len(LOREM)] for i in range(TOKENS))
MODELS = f"""
[[models]]
name = "steady"
provider = "fake"
output_tokens = {TOKENS}
tokens_per_second = {TOKENS_PER_SECOND}

[[models]]
name = "fake"
provider = "fake"
"""
ENV = {"TETHER_SWEEP_SECONDS": "0.5", "TETHER_SHUTDOWN_GRACE_SECONDS": "1"}
LONG_ENV = {
    **ENV,
    "TETHER_STORE_OUTAGE_SECONDS": str(OUTAGE_SECONDS),
    "TETHER_LEASE_SECONDS": "2",
    "TETHER_HEARTBEAT_SECONDS": "0.25",
}
STORAGE_WORDS = ("store", "PostgreSQL", "Redis")  # a storage error names its backend


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.create()
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@dataclass
class Backend:
    name: str
    store: str
    server: PrivatePostgres | PrivateRedis


@pytest.fixture(params=["postgres", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    namespace = unique_name("tether_faults")
    if request.param == "postgres":
        server: PrivatePostgres | PrivateRedis = request.getfixturevalue("private_postgres")
        return Backend("postgres", f"{server.url}?schema={namespace}", server)
    server = request.getfixturevalue("private_redis")
    return Backend("redis", f"{server.url}?prefix={namespace}", server)


@dataclass
class Cluster:
    api: TetherProcess
    worker: TetherProcess
    client: openai.OpenAI


def start_cluster(backend: Backend, workdir: Path, env: dict[str, str]) -> Iterator[Cluster]:
    api = TetherProcess(workdir, MODELS, env, store=backend.store, role="api", name="api")
    worker = TetherProcess(workdir, MODELS, env, store=backend.store, role="worker", name="worker")
    try:
        api.start()  # first: it creates the schema
        worker.start()
        client = openai.OpenAI(base_url=api.base_url, api_key="test", max_retries=0, timeout=30)
        # One stream first, so the client's first-use costs are paid before the clock runs.
        start_stream(client, {"model": "fake", "input": "warm up"}).join()
        yield Cluster(api, worker, client)
    finally:
        api.stop()
        worker.stop()


@pytest.fixture
def cluster(backend: Backend, tmp_path: Path) -> Iterator[Cluster]:
    yield from start_cluster(backend, tmp_path, ENV)


@pytest.fixture
def impatient_cluster(backend: Backend, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster that rides out an unreachable store for OUTAGE_SECONDS only."""
    yield from start_cluster(backend, tmp_path, LONG_ENV)


def start_streams(cluster: Cluster) -> list[LiveStream]:
    """STREAMS responses of `steady`, each generating (checked on the server) and far
    from done when this returns, so that a restart now lands mid-stream."""
    streams = [
        start_stream(cluster.client, {"model": "steady", "input": f"restart {i}"})
        for i in range(STREAMS)
    ]
    words = [generating(cluster.api, live) for live in streams]
    assert max(words) <= TOKENS * 2 // 3, f"too late for a restart mid-stream: {words}"
    return streams


def snapshot_of(tether: TetherProcess, response_id: str) -> dict[str, Any]:
    snapshot: dict[str, Any] = httpx.get(
        f"{tether.base_url}/responses/{response_id}", timeout=10
    ).json()
    return snapshot


def words_of(snapshot: dict[str, Any]) -> list[str]:
    output = snapshot["output"]
    return output[0]["content"][0]["text"].split() if output and output[0]["content"] else []


def check_all(cluster: Cluster, streams: list[LiveStream], tally: Tally) -> list[Checked]:
    """Check every stream against its stored log; count them in the tally."""
    outcomes = []
    for live in streams:
        live.join()
        outcomes.append(check_against_log(cluster.api, live, tally))
        if live.error is not None:
            assert any(word in live.error for word in STORAGE_WORDS), live.error
    return outcomes


def check_keeps_serving(cluster: Cluster, tally: Tally) -> None:
    """The same processes answer, create and stream once the server is back."""
    assert httpx.get(f"http://127.0.0.1:{cluster.api.port}/healthz").status_code == 200
    after = cluster.client.responses.create(model="fake", input="after the restart")
    assert after.status == "completed"
    live = start_stream(cluster.client, {"model": "fake", "input": "after"})
    live.join()
    assert check_against_log(cluster.api, live, tally).status == "completed"


def test_backend_restart_mid_stream_is_ridden_out_and_no_event_is_lost(
    backend: Backend, cluster: Cluster, tally: Tally
) -> None:
    streams = start_streams(cluster)
    backend.server.restart(DOWN_SECONDS)
    tally.faults += 1

    for live, checked in zip(streams, check_all(cluster, streams, tally), strict=True):
        assert live.error is None
        assert checked.status == "completed", checked
        text = "".join(e["delta"] for e in live.events if e["type"] == "response.output_text.delta")
        assert text == TEXT
    check_keeps_serving(cluster, tally)


def test_backend_down_past_the_outage_limit_ends_streams_clearly_then_responses_finish(
    backend: Backend, impatient_cluster: Cluster, tally: Tally
) -> None:
    cluster = impatient_cluster
    streams = start_streams(cluster)
    backend.server.restart(LONG_DOWN_SECONDS)
    tally.faults += 1

    for live in streams:  # they ended while the server was down, each with a clear error
        live.join()
        assert live.error is not None, "the stream outlived the outage limit"
        assert "could not read response" in live.error and "resume" in live.error, live.error
    # Back up: the leases run out, the jobs are handed on, the responses continue from
    # their stored logs and complete.
    for live in streams:
        deadline = time.monotonic() + 30
        while snapshot_of(cluster.api, live.response_id)["status"] == "in_progress":
            assert time.monotonic() < deadline, "still in progress after the server came back"
            time.sleep(0.1)
    for checked in check_all(cluster, streams, tally):
        assert checked.status == "completed", checked
    for live in streams:
        stored = snapshot_of(cluster.api, live.response_id)
        assert " ".join(words_of(stored)) == TEXT
    check_keeps_serving(cluster, tally)
