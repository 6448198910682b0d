"""The run's shared state: sizes, the servers, and running load-generator plans.

`Bench` starts the mock upstream and Tether (SQLite store) with a generated config,
starts further Tether processes on demand for other store URLs, and runs a plan in
a fresh `python -m bench.loadgen` process. `PhaseStats` reads one phase's result.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.loadgen import Phase
from bench.servers import Server, child_env, mock_server, tether_config, tether_server
from bench.services import Namespaces

UNPACED_MODEL = "t256-r0"
FAKE_UNPACED_MODEL = "fake-t256"  # Tether's built-in model: one event per token, no upstream
IDLE_MODEL = "idle-1tps"
REPLAY_MODEL = "replay"
RESPONSES_EVENTS_OVERHEAD = 8  # created … content_part.added, and text.done … completed


@dataclass(frozen=True)
class Sizes:
    quick: bool
    s1_reps: int = 30
    warmup: int = 2
    s2_streams: int = 256  # per phase, `s2_concurrency` at a time
    s2_concurrency: int = 64
    s2_reps: int = 5
    slow_streams: int = 2000
    slow_tokens: int = 100
    slow_rate: float = 20.0
    idle_streams: int = 10_000
    idle_hold: float = 20.0
    ramp_rate: float = 400.0  # new connections per second for the many-stream scenarios
    replay_events: int = 10_000
    replay_reps: int = 10

    @classmethod
    def for_run(cls, quick: bool) -> Sizes:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            s1_reps=10,
            warmup=1,
            s2_streams=128,
            s2_reps=2,
            slow_streams=200,
            idle_streams=1000,
            idle_hold=5.0,
            replay_reps=3,
        )

    @property
    def slow_model(self) -> str:
        return f"t{self.slow_tokens}-r{self.slow_rate:g}"

    @property
    def idle_tokens(self) -> int:
        """Long enough that every idle stream is still open `idle_hold` s after the ramp."""
        return math.ceil(self.idle_streams / self.ramp_rate + self.idle_hold) + 2

    @property
    def replay_tokens(self) -> int:
        return self.replay_events - RESPONSES_EVENTS_OVERHEAD

    def worker_concurrency(self) -> int:
        return max(12_000, self.idle_streams + self.slow_streams + 1000)


def create_body(model: str, **overrides: Any) -> dict[str, Any]:
    return {"model": model, "input": "Write a long story.", "stream": True, **overrides}


def phase(
    name: str, target: str, url: str, body: dict[str, Any] | None, **kw: Any
) -> dict[str, Any]:
    return asdict(Phase(name=name, target=target, url=url, body=body, **kw))


def interleave(variants: list[dict[str, Any]], reps: int, warmup: int) -> list[dict[str, Any]]:
    """`warmup` rounds, then `reps` rounds of every variant; each round rotates the order."""
    phases = []
    for round_ in range(warmup + reps):
        shift = round_ % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            label = f"warmup:{variant['target']}" if round_ < warmup else None
            name = label or f"{variant['target']}#{round_ - warmup + 1}"
            phases.append({**variant, "name": name})
    return phases


@dataclass
class PhaseStats:
    """One phase's measurements; `cpu` and `rss_*` are per watched process name."""

    name: str
    target: str
    streams: int
    ok: int
    events: int
    wall: float
    ttfe: list[float | None]
    total: list[float | None]
    per_stream_events: list[int]
    cpu: dict[str, float]
    rss_before: dict[str, int]
    rss_after: dict[str, int]
    loadgen_cpu: float
    system_busy: float
    raw: dict[str, Any]

    @classmethod
    def of(cls, result: dict[str, Any]) -> PhaseStats:
        before, after = result["before"], result["after"]
        cpu = {
            name: after[name]["cpu_seconds"] - before[name]["cpu_seconds"]
            for name in before
            if name in after
        }
        return cls(
            name=result["name"],
            target=result["target"],
            streams=result["streams"],
            ok=sum(result["ok"]),
            events=sum(result["events"]),
            wall=result["wall"],
            ttfe=result["ttfe"],
            total=result["total"],
            per_stream_events=result["events"],
            cpu=cpu,
            rss_before={n: int(s["rss_bytes"]) for n, s in before.items()},
            rss_after={n: int(s["rss_bytes"]) for n, s in after.items()},
            loadgen_cpu=result["loadgen_cpu"],
            system_busy=result["system_busy"],
            raw=result,
        )

    @property
    def warmup(self) -> bool:
        return self.name.startswith("warmup")

    @property
    def events_per_second(self) -> float:
        return self.events / self.wall if self.wall else 0.0

    @property
    def loadgen_load(self) -> float:
        """The load generator's CPU use, as a fraction of one core."""
        return self.loadgen_cpu / self.wall if self.wall else 0.0

    @property
    def other_load(self) -> float:
        """CPU used by processes outside the benchmark, in cores (noise indicator)."""
        ours = sum(self.cpu.values()) + self.loadgen_cpu
        return max(0.0, self.system_busy - ours) / self.wall if self.wall else 0.0

    def errors(self) -> dict[str, int]:
        errors: dict[str, int] = self.raw["errors"]
        return errors


NOISE_CORES = 0.25


def noise_notes(stats: list[PhaseStats]) -> list[str]:
    """A warning when processes outside the benchmark took CPU during the phases."""
    loads = [s.other_load for s in stats if s.wall > 0.05]  # too short to read reliably
    worst = max(loads, default=0.0)
    if worst < NOISE_CORES:
        return []
    return [
        f"other processes on this machine used up to {worst:.2f} cores during these phases "
        "('other cores'): the figures are disturbed; rerun on a quiet machine to confirm."
    ]


class Bench:
    """The servers of one run and the way to load them."""

    def __init__(self, sizes: Sizes, workdir: Path, results: Path) -> None:
        self.sizes, self.workdir, self.results = sizes, workdir, results
        self.default_store = f"sqlite:///{workdir / 'tether.db'}"
        self._tethers: dict[str, Server] = {}
        self._started = 0
        self._namespaces = Namespaces()
        self._service_stores: dict[str, str | None] = {}
        self.mock = mock_server(workdir).start()
        self.config = workdir / "tether.toml"
        self.config.write_text(
            tether_config(
                self.mock.base_url,
                [UNPACED_MODEL, sizes.slow_model],
                {
                    FAKE_UNPACED_MODEL: {"output_tokens": 256},
                    IDLE_MODEL: {"output_tokens": sizes.idle_tokens, "tokens_per_second": 1},
                    REPLAY_MODEL: {"output_tokens": sizes.replay_tokens},
                },
            )
        )
        self.tether = self.tether_for(self.default_store)

    def tether_for(self, store: str) -> Server:
        """The Tether process serving `store`, started on first use."""
        server = self._tethers.get(store)
        if server is None:
            server = self._tethers[store] = self._start_tether(store)
        return server

    def service_store(self, kind: str) -> str | None:
        """This run's store URL on PostgreSQL or Redis (None: the service is down)."""
        if kind not in self._service_stores:
            self._service_stores[kind] = self._namespaces.store(kind)
        return self._service_stores[kind]

    def fresh_tether(self, name: str) -> Server:
        """A new Tether process with its own SQLite file (for RSS figures that start clean)."""
        store = f"sqlite:///{self.workdir / name}.db"
        return self.tether_for(store)

    def stop_tether(self, server: Server) -> None:
        server.stop()
        self._tethers = {k: v for k, v in self._tethers.items() if v is not server}

    def _start_tether(self, store: str) -> Server:
        env = {"TETHER_WORKER_CONCURRENCY": str(self.sizes.worker_concurrency())}
        self._started += 1
        db_dir = self.workdir / f"tether-{self._started}"
        db_dir.mkdir(exist_ok=True)
        return tether_server(db_dir, str(self._started), store, self.config, env).start()

    def watch(self, **extra: Server) -> dict[str, int]:
        servers = {"tether": self.tether, "mock": self.mock, **extra}
        return {name: server.pid for name, server in servers.items()}

    def run_plan(
        self,
        key: str,
        phases: list[dict[str, Any]],
        watch: dict[str, int] | None = None,
        sample_seconds: float = 0.0,
    ) -> list[PhaseStats]:
        """Run `phases` in a fresh load-generator process; returns their stats in order."""
        plan = {
            "watch": self.watch() if watch is None else watch,
            "sample_seconds": sample_seconds,
            "phases": phases,
        }
        plan_path = self.workdir / f"plan-{key}.json"
        out_path = self.workdir / f"out-{key}.json"
        plan_path.write_bytes(orjson.dumps(plan))
        command = [sys.executable, "-m", "bench.loadgen", "--plan", str(plan_path)]
        subprocess.run([*command, "--out", str(out_path)], env=child_env(), check=True)
        output = orjson.loads(out_path.read_bytes())
        self.loop = output["loop"]
        return [PhaseStats.of(result) for result in output["phases"]]

    def close(self) -> None:
        for server in self._tethers.values():
            server.stop()
        self.mock.stop()
        self._namespaces.drop_all()

    def remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
