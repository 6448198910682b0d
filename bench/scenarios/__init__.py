"""The benchmark scenarios, by number. Each takes the `Bench` and returns a report."""

from __future__ import annotations

from collections.abc import Callable

from bench.harness import Bench
from bench.report import ScenarioReport
from bench.scenarios.latency import single_stream
from bench.scenarios.local_model import local_model
from bench.scenarios.many_streams import many_streams
from bench.scenarios.resume import replay
from bench.scenarios.throughput import concurrent_streams, storage_backends

Scenario = Callable[[Bench], list[ScenarioReport]]

SCENARIOS: dict[int, tuple[str, Scenario]] = {
    1: ("one stream, 256 tokens: time to first event and total time", single_stream),
    2: ("64 concurrent streams x 256 tokens: events/s and CPU per event", concurrent_streams),
    3: ("many slow streams: 2,000 at 20 tokens/s, 10,000 open at 1 token/s", many_streams),
    4: ("resume: replay a 10,000-event response", replay),
    5: ("storage backends: CPU per event, SQLite vs memory", storage_backends),
    6: ("the bundled local model", local_model),
}
