"""`tether keys create | list | revoke` and the start-up rules of `tether serve`, as
real processes on a SQLite store.

Sections: helpers · the commands · a server on the keys · public addresses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.server import REPO, TetherProcess, free_port

FAKE_MODEL = '[[models]]\nname = "fake"\nprovider = "fake"\n'


# --- helpers ------------------------------------------------------------------------


def tether(*args: str, cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TETHER_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def create_key(store: str, project: str, cwd: Path) -> str:
    made = tether("keys", "create", "--project", project, "--store", store, cwd=cwd)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def listed(store: str, cwd: Path) -> list[list[str]]:
    answer = tether("keys", "list", "--store", store, cwd=cwd)
    assert answer.returncode == 0, answer.stderr
    return [line.split() for line in answer.stdout.splitlines()]


@contextmanager
def serving(cwd: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`tether serve ARGS` (its output in a log file) until its health check answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    (cwd / "models.toml").write_text(FAKE_MODEL)
    command = [sys.executable, "-m", "tether", "serve", "--port", str(port)]
    command += ["--config", str(cwd / "models.toml"), *args]
    log = cwd / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield process, port, log
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=20)


# --- the commands -------------------------------------------------------------------


def test_keys_create_prints_only_the_key(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    made = tether(
        "keys", "create", "--project", "acme", "--name", "ci", "--store", store, cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tk-")
    assert "acme" in made.stderr and lines[0] not in made.stderr
    second = create_key(store, "acme", tmp_path)
    assert second != lines[0]


def test_keys_list_shows_ids_projects_and_times_but_no_secret(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    first = create_key(store, "acme", tmp_path)
    second = create_key(store, "beta", tmp_path)
    rows = listed(store, tmp_path)
    assert rows[0] == ["ID", "PROJECT", "CREATED", "REVOKED", "NAME"]
    assert [(r[0], r[1], r[3]) for r in rows[1:]] == [
        (first.split("-")[1], "acme", "-"),
        (second.split("-")[1], "beta", "-"),
    ]
    assert rows[1][2].endswith("Z")
    text = tether("keys", "list", "--store", store, cwd=tmp_path).stdout
    for key in (first, second):
        assert key.split("-", 2)[2] not in text


def test_keys_revoke_marks_the_key_and_refuses_an_unknown_id(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    key_id = create_key(store, "acme", tmp_path).split("-")[1]
    revoked = tether("keys", "revoke", key_id, "--store", store, cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert listed(store, tmp_path)[1][3].endswith("Z")
    unknown = tether("keys", "revoke", "0123456789abcdef", "--store", store, cwd=tmp_path)
    assert unknown.returncode == 1
    assert "no key '0123456789abcdef'" in unknown.stderr


def test_keys_create_refuses_a_bad_project_name(tmp_path: Path) -> None:
    made = tether(
        "keys", "create", "--project", "a b", "--store", f"sqlite:///{tmp_path}/t.db", cwd=tmp_path
    )
    assert made.returncode == 1
    assert "Invalid project name" in made.stderr and made.stdout == ""


# --- a server on the keys -------------------------------------------------------------


def test_server_takes_created_keys_and_drops_revoked_ones(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    key = create_key(store, "acme", tmp_path)
    other = create_key(store, "acme", tmp_path)
    server = TetherProcess(tmp_path, FAKE_MODEL, store=store)
    server.start()
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
        made = client.responses.create(model="fake", input="hi")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.base_url, api_key="nope", max_retries=0).models.list()
        server.stop()  # a SQLite file belongs to one process: revoke while it is stopped
        assert (
            tether("keys", "revoke", key.split("-")[1], "--store", store, cwd=tmp_path).returncode
            == 0
        )
        server.start()
        with pytest.raises(openai.AuthenticationError):
            client.responses.retrieve(made.id)
        same_project = openai.OpenAI(base_url=server.base_url, api_key=other, max_retries=0)
        assert same_project.responses.retrieve(made.id).id == made.id
    finally:
        server.stop()


def test_server_stays_closed_when_every_key_is_revoked(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    key = create_key(store, "acme", tmp_path)
    assert (
        tether("keys", "revoke", key.split("-")[1], "--store", store, cwd=tmp_path).returncode == 0
    )
    with serving(tmp_path, "--store", store) as (_, port, _log):
        answer = httpx.get(f"http://127.0.0.1:{port}/v1/models")
        assert answer.status_code == 401


# --- public addresses -------------------------------------------------------------------


def test_a_public_address_without_keys_refuses_to_start(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    refused = tether(
        "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--store", store, cwd=tmp_path
    )
    assert refused.returncode == 1
    assert "Refusing to serve 0.0.0.0 without API keys" in refused.stderr
    assert "--insecure-no-auth" in refused.stderr


def test_a_public_address_starts_with_insecure_no_auth(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    args = ("--host", "0.0.0.0", "--insecure-no-auth", "--store", store)
    with serving(tmp_path, *args) as (process, port, _log):
        assert process.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 200


def test_a_public_address_starts_when_the_store_has_a_key(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    key = create_key(store, "acme", tmp_path)
    with serving(tmp_path, "--host", "0.0.0.0", "--store", store) as (process, port, _log):
        assert process.poll() is None
        models = f"http://127.0.0.1:{port}/v1/models"
        assert httpx.get(models).status_code == 401
        assert httpx.get(models, headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_open_mode_says_so_at_start_up(tmp_path: Path) -> None:
    with serving(tmp_path, "--store", f"sqlite:///{tmp_path}/t.db") as (process, port, log):
        assert process.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 200
    text = log.read_text()
    assert "without authentication" in text and "loopback only" in text
