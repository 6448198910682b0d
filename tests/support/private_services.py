"""Private PostgreSQL and Redis servers that a test may crash and start again.

The shared services on 5432 and 6379 serve every other test, so the fault suite
never touches them: it starts its own server in a temporary directory on a free
port of 127.0.0.1, and `restart()` kills it (a crash: SIGKILL for Redis, an
immediate shutdown for PostgreSQL) and starts it again on the same port and data.

- `PrivateRedis` persists with the append-only file fsynced before every reply
  (`appendfsync always`): what Redis acknowledged survives its crash, so "no event
  lost" means something (see docs/redis.md: without persistence a restart loses
  everything).
- `PrivatePostgres` is a cluster made by `initdb`. initdb and the server refuse to
  run as root, so as root both run as the `postgres` user (`runuser`) in a directory
  it owns; unix sockets stay in that directory.

Missing binaries skip the test with the reason, unless TETHER_TEST_REQUIRE_SERVICES=1
(as in `tests/support/services.py`), which fails it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.server import free_port

STARTUP_SECONDS = 30.0


def require_binary(name: str, *candidates: str) -> str:
    """The path of the first existing candidate (or `name` on PATH); skips (or fails,
    under TETHER_TEST_REQUIRE_SERVICES=1) when there is none."""
    for path in (*candidates, shutil.which(name)):
        if path and os.access(path, os.X_OK):
            return path
    reason = f"{name} is not installed (needed to run a private server this test may restart)"
    if os.environ.get("TETHER_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; TETHER_TEST_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def _wait_port(port: int, process: subprocess.Popen[bytes] | None, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited at start-up:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"the server did not listen on {port} in time:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


# --- Redis ---------------------------------------------------------------------------


class PrivateRedis:
    """A `redis-server` with its append-only file in `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.binary = require_binary("redis-server", "/usr/bin/redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"<PrivateRedis {self.url} pid={pid} restarts={self.restarts}>"

    def start(self) -> None:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--logfile", str(self.log),
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        _wait_port(self.port, self.process, self.log)
        self._wait_loaded()

    def _wait_loaded(self) -> None:
        """Until Redis answers PING (not LOADING: it replays its file first)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1.0) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"Redis did not load in time:\n{_tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL: Redis crashes; its file holds every write it acknowledged."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self, down_seconds: float) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- PostgreSQL ----------------------------------------------------------------------


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version)
    return require_binary(name, *reversed(found))


def _version(path: str) -> tuple[int, ...]:
    version = Path(path).parents[1].name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


class PrivatePostgres:
    """A PostgreSQL cluster of its own, in a temporary directory."""

    def __init__(self) -> None:
        self.initdb = _postgres_bin("initdb")
        self.pg_ctl = _postgres_bin("pg_ctl")
        self.as_root = os.geteuid() == 0
        if self.as_root:
            require_binary("runuser", "/usr/sbin/runuser", "/sbin/runuser")
        # Not under pytest's tmp_path: its parents are private to root, and the server
        # runs as `postgres` when we are root.
        self.base = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.restarts = 0

    def __repr__(self) -> str:
        return f"<PrivatePostgres {self.url} restarts={self.restarts}>"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        done = subprocess.run(
            [*prefix, *command], capture_output=True, timeout=STARTUP_SECONDS, check=False
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"{' '.join(command)} failed:\n{output}\n{_tail(self.log)}")

    def create(self) -> None:
        if self.as_root:
            shutil.chown(self.base, "postgres", "postgres")
        self._run(
            self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        # fsync off: a crash of the server process (what the tests do) loses nothing
        # the operating system holds; only a crash of the machine would.
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c shared_buffers=16MB -c max_connections=60"
        )
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", str(int(STARTUP_SECONDS)), "start")  # fmt: skip
        _wait_port(self.port, None, self.log)

    def crash(self) -> None:
        """An immediate shutdown: every backend is killed, no checkpoint; the next
        start recovers from the write-ahead log, as after a crash."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self, down_seconds: float) -> None:
        self.crash()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def remove(self) -> None:
        """Stop the server (if it runs) and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)
