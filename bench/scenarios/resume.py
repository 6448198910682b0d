"""Scenario 4: resume — replay a finished, stored response of `replay_events` events.

The response comes from Tether's `fake` model (store=true, a blocking create). It is
then replayed with `GET /v1/responses/{id}?stream=true` from the start and with
`&starting_after=<half>`, interleaved, one replay at a time. Events/s is the events
received over the whole request (connect to last byte); the first event is timed
from the request start too. Figures are medians over the repetitions.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import charts
from bench.harness import REPLAY_MODEL, Bench, create_body, interleave, noise_notes, phase
from bench.report import Check, ScenarioReport, Table, ms, us
from bench.servers import post_json
from bench.stats import median

RATE_GOAL = 200_000
FIRST_EVENT_GOAL = 0.005


def replay(bench: Bench) -> list[ScenarioReport]:
    sizes = bench.sizes
    base = bench.tether.base_url + "/responses"
    started = time.perf_counter()
    created = post_json(base, create_body(REPLAY_MODEL, stream=False, store=True))
    create_seconds = time.perf_counter() - started
    assert isinstance(created, dict), created
    response_id, status = created["id"], created["status"]
    half = sizes.replay_events // 2
    expected = {"from 0": sizes.replay_events, f"after {half}": sizes.replay_events - half - 1}
    urls = {
        "from 0": f"{base}/{response_id}?stream=true",
        f"after {half}": f"{base}/{response_id}?stream=true&starting_after={half}",
    }
    variants = [phase("", target, url, None) for target, url in urls.items()]
    phases = interleave(variants, sizes.replay_reps, sizes.warmup)
    stats = [s for s in bench.run_plan("s4", phases) if not s.warmup]
    title = f"4. resume: replay a stored response of {sizes.replay_events:,} events"
    report = ScenarioReport("s4-resume", title)
    table = Table(
        f"{sizes.replay_reps} interleaved replays each, medians; the response ({status}) "
        f"took {create_seconds:.2f} s to create",
        ["replay", "events", "events/s", "first event", "total", "Tether CPU/event", "failed"],
    )
    figures = {}
    for target in urls:
        runs = [s for s in stats if s.target == target]
        good = [s for s in runs if s.ok == s.streams and s.events]
        f = figures[target] = {
            "events": median([float(s.events) for s in good]),
            "events_per_s": median([s.events / s.total[0] for s in good if s.total[0]]),
            "first_event": median([s.ttfe[0] for s in good]),
            "total": median([s.total[0] for s in good]),
            "cpu_per_event": median([s.cpu["tether"] / s.events for s in good]),
            "failed": len(runs) - len(good),
            "complete": all(s.events == expected[target] for s in good),
        }
        table.add(
            target,
            f["events"],
            f["events_per_s"],
            ms(f["first_event"]),
            ms(f["total"]),
            us(f["cpu_per_event"]),
            f["failed"],
        )
    report.tables.append(table)
    full = figures["from 0"]
    firsts = [f["first_event"] for f in figures.values()]
    worst_first = None if None in firsts else max(f for f in firsts if f is not None)
    report.checks += [
        Check(
            f"replay of {sizes.replay_events:,} events: events/s",
            "-" if full["events_per_s"] is None else f"{full['events_per_s']:,.0f}",
            f"≥ {RATE_GOAL:,}",
            full["events_per_s"] is not None and full["events_per_s"] >= RATE_GOAL,
        ),
        Check(
            "replay: first event (worst of the two medians)",
            ms(worst_first),
            f"≤ {ms(FIRST_EVENT_GOAL, 0)}",
            worst_first is not None and worst_first <= FIRST_EVENT_GOAL,
        ),
    ]
    for target, f in figures.items():
        if not f["complete"]:
            report.notes.append(f"{target}: expected {expected[target]} events per replay")
    report.notes += noise_notes(stats)
    report.data = {
        "response_id": response_id,
        "create_seconds": create_seconds,
        "figures": figures,
        "phases": [s.raw for s in stats],
    }
    panels = [
        (
            "events/s",
            "thousand events/s",
            {
                t: [s.events / s.total[0] / 1000 for s in stats if s.target == t and s.total[0]]
                for t in urls
            },
        ),
        (
            "first event",
            "ms",
            {t: [s.ttfe[0] * 1000 for s in stats if s.target == t and s.ttfe[0]] for t in urls},
        ),
    ]

    def chart(path: Path) -> None:
        charts.boxes(path, title, panels)

    report.chart = chart
    return [report]
