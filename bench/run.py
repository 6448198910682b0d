"""Run Tether's benchmark suite: `python -m bench.run [--scenario N ...] [--quick]`.

Starts the mock upstream and Tether (SQLite store, generated config) on 127.0.0.1,
runs each scenario's load in its own load-generator process, prints a table per
scenario and a summary of the targets, and writes JSON and PNG charts into
`bench/results/`. See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.harness import Bench, Sizes
from bench.procstat import raise_nofile
from bench.report import Check, ScenarioReport, checks_table
from bench.scenarios import SCENARIOS

RESULTS = Path(__file__).resolve().parent / "results"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Tether benchmark suite. Scenarios: "
        + "; ".join(f"{n}. {title}" for n, (title, _) in SCENARIOS.items()),
    )
    parser.add_argument(
        "--scenario",
        type=int,
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument(
        "--quick", action="store_true", help="reduced sizes: the whole suite in about 2 minutes"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where JSON and PNGs go")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    return parser.parse_args()


def _git(*args: str) -> str:
    """Read-only git queries, for the record of what was measured."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return done.stdout.strip()


def _machine() -> dict[str, object]:
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "tether_changed_files": _git("status", "--porcelain", "--", "tether").splitlines(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "platform": platform.platform(),
    }


def main() -> None:
    args = _parse()
    raise_nofile()  # inherited by every process started below
    sizes = Sizes.for_run(args.quick)
    chosen = args.scenario or sorted(SCENARIOS)
    workdir = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    machine = _machine()
    print(
        f"tether bench: {'quick' if sizes.quick else 'full'} run of scenarios {chosen}; "
        f"{machine['cores']} cores, load average {' '.join(machine['load_average_at_start'])}; "
        f"temp dir {workdir}",
        flush=True,
    )
    changed = machine["tether_changed_files"]
    print(
        f"measuring commit {machine['commit']}"
        + (f" with {len(changed)} uncommitted changes under tether/" if changed else ""),
        flush=True,
    )
    started = time.monotonic()
    reports: list[ScenarioReport] = []
    bench = Bench(sizes, workdir, args.results)
    print(
        f"mock upstream pid {bench.mock.pid} at {bench.mock.base_url}; "
        f"tether pid {bench.tether.pid} at {bench.tether.base_url} (py-spy top --pid N)",
        flush=True,
    )
    try:
        for number in chosen:
            title, scenario = SCENARIOS[number]
            print(f"\n--- scenario {number}: {title}", flush=True)
            for report in scenario(bench):
                print(report.render(), flush=True)
                for line in report.save(args.results):
                    print(line, flush=True)
                reports.append(report)
    finally:
        bench.close()
        if not args.keep:
            bench.remove_workdir()
    elapsed = time.monotonic() - started
    checks = [check for report in reports for check in report.checks]
    _summary(reports, checks, machine, sizes, elapsed, getattr(bench, "loop", "n/a"), args.results)
    sys.exit(0)


def _summary(
    reports: list[ScenarioReport],
    checks: list[Check],
    machine: dict[str, object],
    sizes: Sizes,
    elapsed: float,
    loop: str,
    results: Path,
) -> None:
    print()
    print(checks_table(checks, "== summary: targets ==").render())
    passed = sum(1 for c in checks if c.passed)
    print(f"{passed}/{len(checks)} targets met; {elapsed:.0f} s; load generator on {loop}")
    summary = {
        "machine": machine,
        "sizes": sizes.__dict__,
        "elapsed_seconds": elapsed,
        "loadgen_loop": loop,
        "checks": [c.__dict__ | {"verdict": c.verdict} for c in checks],
        "scenarios": [r.key for r in reports],
    }
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
