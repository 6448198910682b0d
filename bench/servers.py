"""The processes a benchmark run starts: the mock upstream and `tether serve`.

Everything binds to 127.0.0.1 on a free port; logs go to the run's temp directory.
Each process inherits the raised RLIMIT_NOFILE of the orchestrator.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def get_json(url: str, timeout: float = 5.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def post_json(url: str, body: object, timeout: float = 600.0) -> object:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


@dataclass
class Server:
    """A child process serving HTTP on 127.0.0.1:`port`, ready when `health_path` answers."""

    name: str
    args: list[str]
    port: int
    log_path: Path
    env: dict[str, str]
    health_path: str = "/healthz"
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Server:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=self.log_path.parent,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up:\n{self.log()}")
            try:
                get_json(f"http://127.0.0.1:{self.port}{self.health_path}", timeout=1)
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start in {STARTUP_SECONDS:g} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def mock_server(workdir: Path) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "bench.mock_upstream", "--port", str(port)]
    return Server("mock upstream", args, port, workdir / "mock.log", child_env())


def tether_server(
    workdir: Path, name: str, store: str, config: Path, env: dict[str, str]
) -> Server:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "tether",
        "serve",
        "--port",
        str(port),
        "--store",
        store,
        "--config",
        str(config),
        "--log-level",
        "warning",
    ]
    return Server(f"tether ({name})", args, port, workdir / f"tether-{name}.log", child_env(env))


def tether_config(
    mock_url: str, chat_models: list[str], fake_models: dict[str, dict[str, object]]
) -> str:
    """TOML: `chat` models named like the mock's (same name on both sides), plus `fake` ones."""
    lines: list[str] = []
    for model in chat_models:
        lines += [
            "[[models]]",
            f'name = "{model}"',
            'provider = "chat"',
            f'base_url = "{mock_url}"',
            f'upstream_model = "{model}"',
            "",
        ]
    for model, options in fake_models.items():
        lines += ["[[models]]", f'name = "{model}"', 'provider = "fake"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
        lines.append("")
    return "\n".join(lines)
