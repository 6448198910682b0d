"""Scenario 3: many slow streams.

3a. `slow_streams` streams of `slow_tokens` tokens at `slow_rate` tokens/s, opened at
    `ramp_rate` per second, first directly to the mock, then through Tether. A stream
    falls behind when it lasts longer than tokens / rate + `LAG_TOLERANCE`.
3b. `idle_streams` streams of Tether's `fake` model at 1 token/s (the mock would need
    two sockets per stream and the machine allows 20,000 file descriptors), opened at
    `ramp_rate` per second. The model's token count keeps every stream open for
    `idle_hold` s after the ramp; the load generator samples Tether's RSS meanwhile.
    RSS per open stream = (peak RSS while all are open - RSS before) / streams open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import charts
from bench.harness import (
    FAKE_UNPACED_MODEL,
    IDLE_MODEL,
    RESPONSES_EVENTS_OVERHEAD,
    Bench,
    PhaseStats,
    create_body,
    noise_notes,
    phase,
)
from bench.report import Check, ScenarioReport, Table, ms
from bench.servers import Server
from bench.stats import median, percentile

TTFE_P99_GOAL = 0.250
LAG_TOLERANCE = 0.250
RSS_PER_STREAM_GOAL = 30 * 1024
SAMPLE_SECONDS = 0.5


def many_streams(bench: Bench) -> list[ScenarioReport]:
    return [slow_streams(bench), idle_streams(bench)]


def slow_streams(bench: Bench) -> ScenarioReport:
    sizes = bench.sizes
    model, n = sizes.slow_model, sizes.slow_streams
    expected = sizes.slow_tokens / sizes.slow_rate
    body = create_body(model)
    common: dict[str, Any] = {
        "streams": n,
        "concurrency": n,
        "rate": sizes.ramp_rate,
        "timeout": expected + 120,
    }
    phases = [
        phase("direct", "direct", bench.mock.base_url + "/responses", body, **common),
        phase("tether", "tether", bench.tether.base_url + "/responses", body, **common),
    ]
    stats = bench.run_plan("s3a", phases)
    title = f"3a. {n:,} streams at {sizes.slow_rate:g} tokens/s ({model})"
    report = ScenarioReport("s3a-slow-streams", title)
    table = Table(
        f"opened at {sizes.ramp_rate:g}/s; lag = duration - {sizes.slow_tokens} / "
        f"{sizes.slow_rate:g} s; behind = lag > {ms(LAG_TOLERANCE, 0)}",
        [
            "target",
            "served",
            "TTFE p50",
            "TTFE p99",
            "lag p50",
            "lag p99",
            "lag max",
            "behind",
            "server cores",
            "loadgen cores",
        ],
    )
    figures: dict[str, dict[str, Any]] = {}
    server_of = {"direct": "mock", "tether": "tether"}
    for s in stats:
        lags = [t - expected for t in s.total if t is not None]
        behind = sum(1 for lag in lags if lag > LAG_TOLERANCE) + (s.streams - len(lags))
        f = figures[s.target] = {
            "served": s.ok,
            "ttfe_p50": median(s.ttfe),
            "ttfe_p99": percentile(s.ttfe, 99),
            "lag_p50": median(lags),
            "lag_p99": percentile(lags, 99),
            "lag_max": max(lags, default=None),
            "behind": behind,
            "server_cores": s.cpu[server_of[s.target]] / s.wall,
        }
        table.add(
            s.target,
            f"{s.ok:,}/{s.streams:,}",
            ms(f["ttfe_p50"]),
            ms(f["ttfe_p99"]),
            ms(f["lag_p50"]),
            ms(f["lag_p99"]),
            ms(f["lag_max"]),
            behind,
            f["server_cores"],
            s.loadgen_load,
        )
    report.tables.append(table)
    tether = figures["tether"]
    report.checks += [
        Check(
            f"{n:,} streams at {sizes.slow_rate:g} tok/s: TTFE p99",
            ms(tether["ttfe_p99"]),
            f"≤ {ms(TTFE_P99_GOAL, 0)}",
            tether["ttfe_p99"] is not None and tether["ttfe_p99"] <= TTFE_P99_GOAL,
        ),
        Check(
            f"{n:,} streams at {sizes.slow_rate:g} tok/s: none behind",
            f"{tether['behind']} behind, max lag {ms(tether['lag_max'])}",
            "0 behind",
            tether["behind"] == 0 and tether["served"] == n,
        ),
    ]
    report.notes += _event_notes(stats, sizes.slow_tokens + RESPONSES_EVENTS_OVERHEAD)
    report.notes += noise_notes(stats)
    report.data = {
        "figures": figures,
        "expected_seconds": expected,
        "phases": [s.raw for s in stats],
    }
    panels = [
        ("time to first event", "ms", {s.target: _ms(s.ttfe) for s in stats}),
        (
            "lag behind the upstream pace",
            "ms",
            {s.target: [(t - expected) * 1000 for t in s.total if t is not None] for s in stats},
        ),
    ]

    def chart(path: Path) -> None:
        charts.cdfs(path, title, panels, log_x=[True, False])

    report.chart = chart
    return report


def idle_streams(bench: Bench) -> ScenarioReport:
    sizes = bench.sizes
    n, tokens = sizes.idle_streams, sizes.idle_tokens
    ramp = n / sizes.ramp_rate
    # A fresh process: RSS freed by earlier scenarios would hide the growth.
    server = bench.fresh_tether("idle")
    try:
        s = _hold_idle_streams(bench, server)
    finally:
        bench.stop_tether(server)
    title = f"3b. {n:,} open streams at 1 token/s (fake, {tokens} tokens, fresh Tether)"
    report = ScenarioReport("s3b-open-streams", title)
    timeline = s.raw["timeline"]
    peak_open = max((row[1] for row in timeline), default=0)
    at_peak = [row[2].get("tether", 0) for row in timeline if row[1] >= 0.99 * peak_open]
    rss_before = s.rss_before["tether"]
    rss_peak = max(at_peak, default=rss_before)
    per_stream = (rss_peak - rss_before) / peak_open if peak_open else None
    complete = sum(1 for e in s.per_stream_events if e == tokens + RESPONSES_EVENTS_OVERHEAD)
    served = min(s.ok, complete)
    table = Table(
        f"opened at {sizes.ramp_rate:g}/s over {ramp:.0f} s, all open for ≥ {sizes.idle_hold:g} s",
        [
            "served",
            "peak open",
            "TTFE p50",
            "TTFE p99",
            "RSS before",
            "RSS peak",
            "RSS/open stream",
            "Tether cores",
            "loadgen cores",
        ],
    )
    table.add(
        f"{served:,}/{n:,}",
        peak_open,
        ms(median(s.ttfe)),
        ms(percentile(s.ttfe, 99)),
        f"{rss_before / 2**20:.0f} MB",
        f"{rss_peak / 2**20:.0f} MB",
        "-" if per_stream is None else f"{per_stream / 1024:.1f} KB",
        s.cpu["tether"] / s.wall,
        s.loadgen_load,
    )
    report.tables.append(table)
    report.checks.append(
        Check(
            f"{n:,} open streams: all served, RSS per open stream",
            f"{served:,}/{n:,}, " + ("-" if per_stream is None else f"{per_stream / 1024:.1f} KB"),
            f"all, ≤ {RSS_PER_STREAM_GOAL // 1024} KB",
            served == n and per_stream is not None and per_stream <= RSS_PER_STREAM_GOAL,
        )
    )
    if s.errors():
        report.notes.append(f"errors: {s.errors()}")
    report.notes += noise_notes([s])
    report.data = {
        "served": served,
        "peak_open": peak_open,
        "rss_before": rss_before,
        "rss_peak": rss_peak,
        "rss_per_open_stream": per_stream,
        "phase": s.raw,
    }
    seconds = [row[0] for row in timeline]
    opened = [row[1] for row in timeline]
    rss_mb = [row[2].get("tether", 0) / 2**20 for row in timeline]

    def chart(path: Path) -> None:
        charts.timeline(path, title, seconds, opened, rss_mb)

    report.chart = chart
    return report


def _hold_idle_streams(bench: Bench, server: Server) -> PhaseStats:
    """Warm the server up with a few short streams, then open the idle ones."""
    sizes = bench.sizes
    n = sizes.idle_streams
    url = server.base_url + "/responses"
    warm = phase("warmup", "tether", url, create_body(FAKE_UNPACED_MODEL), streams=16)
    idle = phase(
        "tether",
        "tether",
        url,
        create_body(IDLE_MODEL),
        streams=n,
        concurrency=n,
        rate=sizes.ramp_rate,
        timeout=n / sizes.ramp_rate + sizes.idle_tokens + 120,
    )
    watch = {"tether": server.pid, "mock": bench.mock.pid}
    stats = bench.run_plan("s3b", [warm, idle], watch=watch, sample_seconds=SAMPLE_SECONDS)
    return stats[-1]


def _event_notes(stats: list[PhaseStats], expected: int) -> list[str]:
    notes = []
    for s in stats:
        short = sum(1 for e in s.per_stream_events if e != expected)
        if short:
            notes.append(f"{s.target}: {short} streams did not carry {expected} events")
        if s.errors():
            notes.append(f"{s.target} errors: {s.errors()}")
    return notes


def _ms(values: list[float | None]) -> list[float]:
    return [v * 1000 for v in values if v is not None]
