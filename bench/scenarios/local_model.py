"""Scenario 6: Tether with the bundled local model — a placeholder until #5 lands."""

from __future__ import annotations

from bench.harness import Bench
from bench.report import ScenarioReport


def local_model(bench: Bench) -> list[ScenarioReport]:
    report = ScenarioReport("s6-local-model", "6. the bundled local model")
    report.skipped = "needs the local model (#5)"
    return [report]
