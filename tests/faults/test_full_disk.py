"""SQLite on a disk that fills up under live streams (`tests/support/full_disk.py`).

The store is on a 16 MiB tmpfs mounted for the test and filled with a ballast file:
real ENOSPC. Where mounting is not allowed (no root), the server's files are held at
their size with RLIMIT_FSIZE instead, so writes fail with EFBIG; the test prints which
one it used.

Once the disk is full, the responses whose appends fail end clearly: `failed` with the
storage error when even that much can be written, else their live streams end with an
`error` frame saying so (and the server logs it). Meanwhile the server stays up,
answers /healthz and serves what it had committed, unchanged; a create that cannot be
stored is a 503 that says why. Once space is freed, new responses work, and the
interrupted ones are continued from their stored logs (their leases ran out) and
complete — gapless, no event lost or repeated.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.faults.conftest import Tally
from tests.faults.live import check_against_log, generating, start_stream, stored_log
from tests.support.full_disk import Disk, small_disk
from tests.support.server import TetherProcess
from tether.providers.fake import LOREM

pytestmark = pytest.mark.faults

TOKENS = 60
TOKENS_PER_SECOND = 30
STREAMS = 3
COMMITTED = 3
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
ENV = {"TETHER_SWEEP_SECONDS": "0.5", "TETHER_LEASE_SECONDS": "2"}
FULL_WORDS = ("disk is full", "SQLite could not write")  # the storage error says what


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    with small_disk(tmp_path) as disk:
        print(f"full disk by: {disk.kind}")
        yield disk


@pytest.fixture
def tether(tmp_path: Path, disk: Disk) -> Iterator[TetherProcess]:
    # The config and the server log stay off the small disk; only the store is on it.
    process = TetherProcess(tmp_path, MODELS, ENV, store=f"sqlite:///{disk.path / 'tether.db'}")
    process.start()
    assert process.process is not None
    disk.pid = process.process.pid
    yield process
    process.stop()


def get(tether: TetherProcess, path: str) -> httpx.Response:
    return httpx.get(f"{tether.base_url}{path}", timeout=10)


def full(message: str | None) -> bool:
    return message is not None and any(words in message for words in FULL_WORDS)


def test_full_disk_fails_responses_clearly_keeps_serving_and_recovers(
    tether: TetherProcess, disk: Disk, tally: Tally
) -> None:
    client = openai.OpenAI(base_url=tether.base_url, api_key="test", max_retries=0, timeout=30)
    committed: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    for i in range(COMMITTED):
        done = client.responses.create(model="fake", input=f"kept {i}")
        assert done.status == "completed"
        snapshot = get(tether, f"/responses/{done.id}").json()
        committed[done.id] = (snapshot, stored_log(tether, done.id))
    streams = [
        start_stream(client, {"model": "steady", "input": f"full {i}"}) for i in range(STREAMS)
    ]
    words = [generating(tether, live) for live in streams]
    assert max(words) <= TOKENS * 2 // 3, f"too late to fill the disk mid-stream: {words}"

    disk.fill()
    tally.faults += 1
    for live in streams:  # each ends clearly: a stored failure or an error frame
        live.join()
        stored = get(tether, f"/responses/{live.response_id}").json()
        if stored["status"] == "failed":
            assert full(stored["error"]["message"]), stored["error"]
        else:
            assert full(live.error), live.error
            assert "could not be stored either" in str(live.error)
    # Up, answering, serving what it had committed as it was.
    assert httpx.get(f"http://127.0.0.1:{tether.port}/healthz").status_code == 200
    for response_id, (snapshot, log) in committed.items():
        assert get(tether, f"/responses/{response_id}").json() == snapshot
        assert stored_log(tether, response_id) == log
    refused = httpx.post(
        f"{tether.base_url}/responses", json={"model": "fake", "input": "no room"}, timeout=30
    )
    assert refused.status_code == 503, refused.text
    assert full(refused.json()["error"]["message"]), refused.text
    logged = (tether.log_path).read_text()
    assert "disk is full" in logged or "SQLite could not write" in logged

    disk.free()
    after = client.responses.create(model="fake", input="room again")
    assert after.status == "completed"
    for live in streams:  # the interrupted ones finish, from their stored logs
        deadline = time.monotonic() + 30
        while get(tether, f"/responses/{live.response_id}").json()["status"] == "in_progress":
            assert time.monotonic() < deadline, "still in progress after space was freed"
            time.sleep(0.1)
        checked = check_against_log(tether, live, tally)
        if checked.status == "failed":
            assert full(checked.error), checked.error
        else:
            assert checked.status == "completed", checked
            stored = get(tether, f"/responses/{live.response_id}").json()
            assert stored["output"][0]["content"][0]["text"] == TEXT
    tally.responses += COMMITTED  # their logs, read again while the disk was full
