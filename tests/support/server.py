"""Run `tether serve` as a real OS process for end-to-end tests.

`TetherProcess` starts the server on a free port with its own SQLite file and
config, waits until it answers, and can kill it (SIGKILL), stop it (SIGTERM) and
start it again on the same file — what crash tests need.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_SECONDS = 20.0
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


UPSTREAM_KEY = "sk-upstream-secret-0123456789"


def models_toml(mock_chat_url: str | None = None, mock_responses_url: str | None = None) -> str:
    """The models every end-to-end server serves (names say what they do): `chat-*` in
    front of the mock Chat Completions upstream, `resp-*` in front of the mock Responses
    upstream (each `upstream_model` is a script of `tests.support.mock_responses`)."""
    text = """
[[models]]
name = "fake"
provider = "fake"

[[models]]
name = "fake-256"
provider = "fake"
output_tokens = 256

[[models]]
name = "echo"
provider = "fake"
mode = "echo"

[[models]]
name = "slow"
provider = "fake"
output_tokens = 60
tokens_per_second = 40

[[models]]
name = "very-slow"
provider = "fake"
output_tokens = 400
tokens_per_second = 20

[[models]]
name = "stalled"
provider = "fake"
output_tokens = 5
first_token_delay_ms = 60000

[[models]]
name = "failing"
provider = "fake"
output_tokens = 20
fail_after_tokens = 5
"""
    if mock_chat_url:
        for name, upstream in [
            ("chat-echo", "echo"),
            ("chat-words", "words-20"),
            ("chat-500", "status-500"),
            ("chat-429", "status-429"),
            ("chat-drop", "drop-after-3"),
            ("chat-no-finish", "no-finish"),
        ]:
            text += f"""
[[models]]
name = "{name}"
provider = "chat"
base_url = "{mock_chat_url}"
upstream_model = "{upstream}"
api_key = "{UPSTREAM_KEY}"
""" + ("max_retries = 0\n" if upstream.startswith("status-") else "")
    if mock_responses_url:
        for name, upstream in [
            ("resp-text", "text-20"),
            ("resp-echo", "echo"),
            ("resp-slow", "slow-12"),
            ("resp-very-slow", "slow-400"),
            ("resp-tool", "tool-call"),
            ("resp-reasoning", "reasoning"),
            ("resp-web", "web-search"),
            ("resp-drop", "drop-after-3"),
            ("resp-failed", "failed-server_error"),
            ("resp-error-event", "error-event"),
            ("resp-429", "status-429"),
        ]:
            text += f"""
[[models]]
name = "{name}"
provider = "responses"
base_url = "{mock_responses_url}"
upstream_model = "{upstream}"
api_key = "{UPSTREAM_KEY}"
""" + ("max_retries = 0\n" if upstream.startswith("status-") else "")
    return text


class TetherProcess:
    """One `tether serve` process; `restart()` reuses its store file and port.

    `store` (default: a SQLite file in `workdir`) and `role` let several processes
    share PostgreSQL or Redis: `serve` (API and worker), `api` (`serve --no-worker`)
    or `worker` (`tether worker`, no HTTP; started once its log says it runs)."""

    def __init__(
        self,
        workdir: Path,
        config: str,
        extra_env: dict[str, str] | None = None,
        *,
        store: str | None = None,
        role: str = "serve",
        name: str = "server",
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.store = store or f"sqlite:///{workdir / 'tether.db'}"
        self.role = role
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(config)
        self.log_path = workdir / f"{name}.log"
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"<TetherProcess {self.base_url} pid={pid}>"

    def start(self) -> None:
        # The server runs this checkout's code, whatever `tether` is installed elsewhere.
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            "PYTHONPATH": path,
            "TETHER_HEARTBEAT_SECONDS": "1",
            **self.extra_env,
        }
        command = [sys.executable, "-m", "tether"]
        if self.role == "worker":
            command += ["worker", "--log-level", "info"]
        else:
            command += ["serve", "--port", str(self.port), "--log-level", "warning"]
            if self.role == "api":
                command.append("--no-worker")
        command += ["--store", self.store, "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            started_at = log.tell()
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tether exited at start-up:\n{self.log_path.read_text()}")
            if self.role == "worker":
                if b"generating from" in self.log_path.read_bytes()[started_at:]:
                    return
                time.sleep(0.05)
                continue
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"tether did not start in time:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
