"""Scenario 1: one stream of 256 unpaced tokens, Tether vs the mock's Responses endpoint.

Repetitions alternate Tether and direct streams (one at a time, one connection each)
after warm-up rounds; the figures are medians and p90 over the repetitions.
"""

from __future__ import annotations

from pathlib import Path

from bench import charts
from bench.harness import (
    UNPACED_MODEL,
    Bench,
    PhaseStats,
    create_body,
    interleave,
    noise_notes,
    phase,
)
from bench.report import Check, ScenarioReport, Table, ms
from bench.stats import median, percentile

TTFE_FACTOR, TTFE_SLACK = 1.10, 0.002
TOTAL_GOAL = 0.010


def single_stream(bench: Bench) -> list[ScenarioReport]:
    body = create_body(UNPACED_MODEL)
    variants = [
        phase("", "direct", bench.mock.base_url + "/responses", body),
        phase("", "tether", bench.tether.base_url + "/responses", body),
    ]
    phases = interleave(variants, bench.sizes.s1_reps, bench.sizes.warmup)
    stats = [s for s in bench.run_plan("s1", phases) if not s.warmup]
    by_target = {t: [s for s in stats if s.target == t] for t in ("direct", "tether")}

    def series(target: str, what: str) -> list[float]:
        values = (getattr(s, what)[0] for s in by_target[target] if s.ok == s.streams)
        return [v for v in values if v is not None]

    report = ScenarioReport("s1-single-stream", f"1. one stream, {UNPACED_MODEL}")
    table = Table(
        f"{bench.sizes.s1_reps} interleaved repetitions",
        ["target", "TTFE p50", "TTFE p90", "total p50", "total p90", "events", "failed"],
    )
    figures: dict[str, dict[str, float | None]] = {}
    for target, runs in by_target.items():
        ttfe, total = series(target, "ttfe"), series(target, "total")
        figures[target] = {
            "ttfe_p50": median(ttfe),
            "ttfe_p90": percentile(ttfe, 90),
            "total_p50": median(total),
            "total_p90": percentile(total, 90),
        }
        events = median([float(s.events) for s in runs])
        failed = sum(s.streams - s.ok for s in runs)
        f = figures[target]
        table.add(
            target,
            ms(f["ttfe_p50"]),
            ms(f["ttfe_p90"]),
            ms(f["total_p50"]),
            ms(f["total_p90"]),
            events,
            failed,
        )
    report.tables.append(table)
    report.checks += _checks(figures)
    report.notes += _notes(by_target)
    report.notes += noise_notes(stats)
    report.data = {"figures": figures, "phases": [s.raw for s in stats]}
    panels = [
        ("time to first event", "ms", {t: _ms(series(t, "ttfe")) for t in by_target}),
        ("total time", "ms", {t: _ms(series(t, "total")) for t in by_target}),
    ]

    def chart(path: Path) -> None:
        charts.boxes(path, f"One stream, {UNPACED_MODEL}: Tether vs direct", panels)

    report.chart = chart
    return [report]


def _checks(figures: dict[str, dict[str, float | None]]) -> list[Check]:
    direct, tether = figures["direct"], figures["tether"]
    checks = []
    if direct["ttfe_p50"] is not None and tether["ttfe_p50"] is not None:
        goal = direct["ttfe_p50"] * TTFE_FACTOR + TTFE_SLACK
        checks.append(
            Check(
                "TTFE, 1 stream (p50)",
                ms(tether["ttfe_p50"]),
                f"≤ 1.10 x direct + 2 ms = {ms(goal)}",
                tether["ttfe_p50"] <= goal,
            )
        )
    if tether["total_p50"] is not None:
        checks.append(
            Check(
                "total, 256-token stream (p50)",
                ms(tether["total_p50"]),
                f"≤ {ms(TOTAL_GOAL, 0)}",
                tether["total_p50"] <= TOTAL_GOAL,
            )
        )
    return checks


def _notes(by_target: dict[str, list[PhaseStats]]) -> list[str]:
    notes = []
    direct_events = median([float(s.events) for s in by_target["direct"]])
    tether_events = median([float(s.events) for s in by_target["tether"]])
    if direct_events and tether_events and tether_events < direct_events:
        notes.append(
            f"Tether delivered {tether_events:.0f} events for the {direct_events:.0f} of the "
            "direct stream: it merges the text of one upstream network read into one delta."
        )
    return notes


def _ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]
