"""Scenarios 2 and 5: many concurrent unpaced streams — events/s and CPU per event.

Scenario 2 interleaves phases of `s2_streams` streams (64 at a time) through Tether
(SQLite, store=true) and directly to the mock. The server CPU of a phase is Tether's
for Tether phases and the mock's for direct ones; figures are medians over phases.

Scenario 5 runs the same load against each entry of `BACKENDS` — a store URL and
request overrides — and compares Tether's CPU per event with the in-memory path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import charts
from bench.harness import (
    FAKE_UNPACED_MODEL,
    UNPACED_MODEL,
    Bench,
    PhaseStats,
    create_body,
    interleave,
    noise_notes,
    phase,
)
from bench.report import Check, ScenarioReport, Table, us
from bench.servers import Server
from bench.stats import median

CPU_PER_EVENT_GOAL = 25e-6
BACKEND_RATIO_GOAL = 1.3
TOKENS = 256


@dataclass(frozen=True)
class Backend:
    """A storage configuration: `store` URL (None: the run's SQLite file) and body overrides."""

    name: str
    store: str | None
    overrides: dict[str, Any] = field(default_factory=dict)


BASELINE_BACKEND = "memory"
# PostgreSQL and Redis take their URLs from TETHER_BENCH_POSTGRES_URL /
# TETHER_BENCH_REDIS_URL (defaults: the local services); each run writes under its
# own schema / key prefix and removes it afterwards (`bench.services`).
BACKENDS = [
    Backend("sqlite", None),
    Backend("postgres", "postgres"),
    Backend("redis", "redis"),
    Backend(BASELINE_BACKEND, None, {"store": False}),
]


@dataclass(frozen=True)
class Load:
    """One side of a comparison: where streams go and which process serves them."""

    target: str
    server: Server
    body: dict[str, Any]


def _variants(loads: list[Load], bench: Bench) -> list[dict[str, Any]]:
    return [
        phase(
            "",
            load.target,
            load.server.base_url + "/responses",
            load.body,
            streams=bench.sizes.s2_streams,
            concurrency=bench.sizes.s2_concurrency,
        )
        for load in loads
    ]


def _figures(runs: list[PhaseStats], server: str) -> dict[str, float | None]:
    """Medians over phases; `server` is the watched process that served them."""

    def med(values: list[float]) -> float | None:
        return median(values)

    good = [r for r in runs if r.events]
    return {
        "events_per_s": med([r.events_per_second for r in good]),
        "events_per_stream": med([r.events / r.streams for r in good]),
        "cpu_per_event": med([r.cpu[server] / r.events for r in good]),
        "cpu_per_token": med([r.cpu[server] / (r.streams * TOKENS) for r in good]),
        "server_cores": med([r.cpu[server] / r.wall for r in good]),
        "mock_per_token": med([r.cpu["mock"] / (r.streams * TOKENS) for r in good]),
        "loadgen_cores": med([r.loadgen_load for r in good]),
        "other_cores": med([r.other_load for r in good]),
        "failed": float(sum(r.streams - r.ok for r in runs)),
    }


HEADER = [
    "target",
    "events/s",
    "events/stream",
    "server CPU/event",
    "server CPU/token",
    "server cores",
    "mock CPU/token",
    "loadgen cores",
    "other cores",
    "failed",
]


def _row(table: Table, target: str, f: dict[str, float | None]) -> None:
    table.add(
        target,
        f["events_per_s"],
        f["events_per_stream"],
        us(f["cpu_per_event"]),
        us(f["cpu_per_token"]),
        f["server_cores"],
        us(f["mock_per_token"]),
        f["loadgen_cores"],
        f["other_cores"],
        int(f["failed"] or 0),
    )


def _chart(stats: list[PhaseStats], targets: list[str], title: str) -> Any:
    def per_stream(what: str) -> dict[str, list[float]]:
        return {
            t: [v * 1000 for s in stats if s.target == t for v in getattr(s, what) if v]
            for t in targets
        }

    panels = [
        ("time to first event", "ms", per_stream("ttfe")),
        ("stream duration", "ms", per_stream("total")),
    ]

    def chart(path: Path) -> None:
        charts.boxes(path, title, panels)

    return chart


def concurrent_streams(bench: Bench) -> list[ScenarioReport]:
    sizes = bench.sizes
    body = create_body(UNPACED_MODEL)
    fake = f"tether ({FAKE_UNPACED_MODEL})"
    loads = [
        Load("direct", bench.mock, body),
        Load("tether", bench.tether, body),
        Load(fake, bench.tether, create_body(FAKE_UNPACED_MODEL)),
    ]
    phases = interleave(_variants(loads, bench), sizes.s2_reps, sizes.warmup)
    stats = [s for s in bench.run_plan("s2", phases) if not s.warmup]
    servers = {"direct": "mock", "tether": "tether", fake: "tether"}
    title = f"2. {sizes.s2_concurrency} concurrent streams x {TOKENS} tokens ({UNPACED_MODEL})"
    report = ScenarioReport("s2-concurrent-streams", title)
    table = Table(
        f"{sizes.s2_reps} phases of {sizes.s2_streams} streams each, medians; "
        "server = Tether (SQLite, store=true) or, for direct, the mock",
        HEADER,
    )
    figures = {}
    for load in loads:
        runs = [s for s in stats if s.target == load.target]
        figures[load.target] = _figures(runs, servers[load.target])
        _row(table, load.target, figures[load.target])
    report.tables.append(table)
    report.checks.append(_cpu_check("server CPU per event (64 x 256, SQLite)", figures["tether"]))
    report.notes += _coalescing_note(figures["tether"], figures["direct"])
    report.notes.append(
        f"'{fake}' is Tether's built-in fake model, {TOKENS} tokens, no upstream: one event "
        "per token, so it shows the per-event cost of the runner, the store and the SSE path."
    )
    report.notes += noise_notes(stats)
    report.data = {"figures": figures, "phases": [s.raw for s in stats]}
    report.chart = _chart(stats, [load.target for load in loads], title)
    return [report]


def _cpu_check(what: str, f: dict[str, float | None]) -> Check:
    value = f["cpu_per_event"]
    return Check(
        what,
        f"{us(value)} ({us(f['cpu_per_token'])}/upstream token)",
        f"≤ {us(CPU_PER_EVENT_GOAL)}",
        None if value is None else value <= CPU_PER_EVENT_GOAL,
    )


def _coalescing_note(tether: dict[str, float | None], direct: dict[str, float | None]) -> list[str]:
    t, d = tether["events_per_stream"], direct["events_per_stream"]
    if t is None or d is None or t >= d:
        return []
    return [
        f"Tether delivered {t:.1f} events per stream against {d:.0f} direct: it merges the "
        "text of each upstream network read into one delta. 'server CPU/token' divides by "
        f"the {TOKENS} upstream tokens, 'server CPU/event' by the events actually delivered."
    ]


def storage_backends(bench: Bench) -> list[ScenarioReport]:
    sizes = bench.sizes
    loads, watch = [], {"mock": bench.mock.pid}
    skipped: list[str] = []
    for backend in BACKENDS:
        store = bench.default_store if backend.store is None else bench.service_store(backend.store)
        if store is None:
            skipped.append(backend.name)
            continue
        server = bench.tether_for(store)
        watch[f"tether:{backend.name}"] = server.pid
        loads.append(Load(backend.name, server, create_body(UNPACED_MODEL, **backend.overrides)))
    phases = interleave(_variants(loads, bench), sizes.s2_reps, sizes.warmup)
    stats = [s for s in bench.run_plan("s5", phases, watch=watch) if not s.warmup]
    title = f"5. storage backends, {sizes.s2_concurrency} x {TOKENS} tokens"
    report = ScenarioReport("s5-storage-backends", title)
    table = Table(
        f"{sizes.s2_reps} phases of {sizes.s2_streams} streams per backend, medians",
        [*HEADER, f"÷ {BASELINE_BACKEND}"],
    )
    figures = {
        load.target: _figures(
            [s for s in stats if s.target == load.target], f"tether:{load.target}"
        )
        for load in loads
    }
    base = figures.get(BASELINE_BACKEND, {}).get("cpu_per_event")
    for name, f in figures.items():
        _row(table, name, f)
        value = f["cpu_per_event"]
        table.rows[-1].append("-" if not base or value is None else f"{value / base:.2f}")
    report.tables.append(table)
    for name, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL"), ("redis", "Redis")):
        if name not in figures or not base:
            continue
        value = figures[name]["cpu_per_event"]
        ratio = None if value is None else value / base
        report.checks.append(
            Check(
                f"CPU per event, {label} ÷ {BASELINE_BACKEND}",
                "-" if ratio is None else f"{ratio:.2f}",
                f"≤ {BACKEND_RATIO_GOAL}",
                None if ratio is None else ratio <= BACKEND_RATIO_GOAL,
            )
        )
    if skipped:
        report.notes.append(f"skipped (service unreachable): {', '.join(skipped)}")
    report.notes.append(
        f"'{BASELINE_BACKEND}' is store=false in the request body (Tether's in-memory path)."
    )
    report.notes += noise_notes(stats)
    report.data = {
        "backends": [b.__dict__ for b in BACKENDS],
        "figures": figures,
        "phases": [s.raw for s in stats],
    }
    report.chart = _chart(stats, [load.target for load in loads], title)
    return [report]
