"""The load generator: runs phases of SSE streams and measures them (its own process).

    python -m bench.loadgen --base-url http://127.0.0.1:8000/v1 --model t256-r0 \\
        --streams 64 --concurrency 64 [--path /responses] [--reps 3] [--out run.json]

or, as `bench.run` uses it, `python -m bench.loadgen --plan plan.json --out out.json`.

A plan is a list of phases run one after the other, in order (the orchestrator
interleaves Tether and direct phases). A phase opens `streams` streams to one URL,
at most `concurrency` at a time, started no faster than `rate` per second (0 = no
ramp), and records for every stream its status, time to first event, total time
and event count. Around each phase it reads the CPU time and RSS of the watched
processes (`watch`: name → pid) and its own CPU time; during the phase it samples
their RSS every `sample_seconds` with the number of streams open, and keeps the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import procstat
from bench.aio import loop_name, run_fast
from bench.client import StreamResult, Target, open_stream
from bench.stats import percentile

__all__ = ["Phase", "StreamResult", "Target", "open_stream", "run_plan"]


@dataclass(frozen=True)
class Phase:
    name: str
    target: str  # a label: "tether", "direct", a backend name …
    url: str
    body: dict[str, Any] | None = None  # None: GET
    streams: int = 1
    concurrency: int = 1
    rate: float = 0.0  # stream starts per second; 0 = as fast as `concurrency` allows
    timeout: float = 120.0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Phase:
        return cls(**data)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Sampler:
    """Samples the watched processes' RSS while a phase runs; keeps the peak and a timeline."""

    def __init__(self, watch: dict[str, int], every: float) -> None:
        self.watch, self.every = watch, every
        self.open = 0
        self.peak_open = 0
        self.peak_rss: dict[str, int] = {}
        self.timeline: list[list[Any]] = []

    def note_open(self, delta: int) -> None:
        self.open += delta
        self.peak_open = max(self.peak_open, self.open)

    def take(self, t0: float) -> None:
        rss = {name: _rss(pid) for name, pid in self.watch.items()}
        for name, value in rss.items():
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), value)
        self.timeline.append([round(time.perf_counter() - t0, 3), self.open, rss])

    async def run(self, t0: float) -> None:
        while True:
            self.take(t0)
            await asyncio.sleep(self.every)


def _rss(pid: int) -> int:
    try:
        return procstat.rss_bytes(pid)
    except OSError:
        return 0


def _samples(watch: dict[str, int]) -> dict[str, dict[str, float]]:
    out = {}
    for name, pid in watch.items():
        try:
            out[name] = procstat.sample(pid).to_dict()
        except OSError:
            continue
    return out


async def run_phase(phase: Phase, watch: dict[str, int], sample_seconds: float) -> dict[str, Any]:
    target = Target.build(phase.url, phase.body, headers=phase.headers)
    sampler = _Sampler(watch, sample_seconds)
    semaphore = asyncio.Semaphore(phase.concurrency)
    results: list[StreamResult | None] = [None] * phase.streams
    loop = asyncio.get_running_loop()

    async def one(index: int, not_before: float) -> None:
        delay = not_before - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        async with semaphore:
            sampler.note_open(1)
            try:
                results[index] = await open_stream(target, phase.timeout)
            finally:
                sampler.note_open(-1)

    before, cpu_before = _samples(watch), _own_cpu()
    busy_before = procstat.system_busy_seconds()
    t0 = time.perf_counter()
    sampling = asyncio.ensure_future(sampler.run(t0)) if sample_seconds > 0 else None
    start = loop.time()
    step = 1 / phase.rate if phase.rate > 0 else 0.0
    await asyncio.gather(*(one(i, start + i * step) for i in range(phase.streams)))
    wall = time.perf_counter() - t0
    if sampling is not None:
        sampling.cancel()
        sampler.take(t0)
    cpu, after = _own_cpu() - cpu_before, _samples(watch)
    busy = procstat.system_busy_seconds() - busy_before
    done = [r for r in results if r is not None]
    errors = Counter(r.error for r in done if r.error)
    return {
        "name": phase.name,
        "target": phase.target,
        "url": phase.url,
        "streams": phase.streams,
        "concurrency": phase.concurrency,
        "rate": phase.rate,
        "wall": wall,
        "loadgen_cpu": cpu,
        "system_busy": busy,
        "before": before,
        "after": after,
        "peak_rss": sampler.peak_rss,
        "peak_open": sampler.peak_open,
        "timeline": sampler.timeline,
        "ok": [r.ok for r in done],
        "status": [r.status for r in done],
        "ttfe": [r.ttfe for r in done],
        "total": [r.total for r in done],
        "events": [r.events for r in done],
        "keepalives": sum(r.keepalives for r in done),
        "errors": dict(errors.most_common(10)),
    }


async def run_plan(plan: dict[str, Any], *, verbose: bool = True) -> dict[str, Any]:
    watch = {str(k): int(v) for k, v in plan.get("watch", {}).items()}
    sample_seconds = float(plan.get("sample_seconds", 0.0))
    phases = [Phase.from_dict(p) for p in plan["phases"]]
    out = []
    for phase in phases:
        result = await run_phase(phase, watch, sample_seconds)
        if verbose:
            print(summary_line(result), file=sys.stderr, flush=True)
        out.append(result)
    return {"loop": loop_name(), "phases": out}


def summary_line(result: dict[str, Any]) -> str:
    def ms(values: list[float | None], q: float) -> str:
        value = percentile(values, q)
        return "-" if value is None else f"{value * 1000:.1f}"

    ok = sum(result["ok"])
    events = sum(result["events"])
    rate = events / result["wall"] if result["wall"] else 0.0
    load = result["loadgen_cpu"] / result["wall"] if result["wall"] else 0.0
    line = (
        f"{result['name']:<18} ok {ok}/{result['streams']}  events {events} ({rate:,.0f}/s)  "
        f"TTFE p50 {ms(result['ttfe'], 50)} p99 {ms(result['ttfe'], 99)} ms  "
        f"total p50 {ms(result['total'], 50)} p99 {ms(result['total'], 99)} ms  "
        f"loadgen CPU {load:.0%}"
    )
    if result["errors"]:
        line += f"  errors {result['errors']}"
    return line


# --- command line ------------------------------------------------------------------------


def _standalone_plan(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] | None = None
    if args.method == "POST":
        body = {"model": args.model, "input": args.input, "stream": True}
        body.update(orjson.loads(args.body) if args.body else {})
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    url = args.base_url.rstrip("/") + args.path
    phase = Phase(
        name="",
        target=args.label,
        url=url,
        body=body,
        streams=args.streams,
        concurrency=args.concurrency,
        rate=args.rate,
        timeout=args.timeout,
        headers=headers,
    )
    phases = [asdict(phase) | {"name": f"{args.label}#{i + 1}"} for i in range(args.reps)]
    watch = dict(item.split("=", 1) for item in args.watch)
    return {"watch": watch, "sample_seconds": args.sample_seconds, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description="Tether benchmark load generator.")
    parser.add_argument("--plan", type=Path, help="a plan JSON file (as bench.run writes)")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--path", default="/responses", help="appended to --base-url")
    parser.add_argument("--model", default="t256-r0")
    parser.add_argument("--method", default="POST", choices=["POST", "GET"])
    parser.add_argument("--input", default="Write a long story.")
    parser.add_argument("--body", help="JSON merged into the body")
    parser.add_argument("--api-key", help="sent as Authorization: Bearer …")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="stream starts per second")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--label", default="target")
    parser.add_argument("--watch", action="append", default=[], help="NAME=PID to measure")
    parser.add_argument("--sample-seconds", type=float, default=0.0)
    args = parser.parse_args()
    procstat.raise_nofile()
    plan = orjson.loads(args.plan.read_bytes()) if args.plan else _standalone_plan(args)
    results = run_fast(run_plan(plan))
    if args.out:
        args.out.write_bytes(orjson.dumps(results))


if __name__ == "__main__":
    main()
