"""The thread side of the `llama_cpp` provider: one loaded GGUF model instance that
renders a request with the model's chat template and generates token by token.

Everything here blocks and runs on a slot's own thread (see `llama_schedule`); the
event loop only receives the decoded text through `emit`. Between two tokens the
loop checks `stop`, so a cancelled request stops within one token.

Continuation (crash recovery): given the partial assistant text, the engine
generates again from the start with the same sampling (greedy, or the same seed) and
emits only what follows the partial text, so the result is exactly the rest of the
uninterrupted answer. The price is the time to regenerate the partial text (at the
model's usual speed, with nothing streamed meanwhile). If the new output departs
from the partial text (a different machine or thread count can round differently),
the engine falls back to prefilling the partial text after the prompt and going on
from there — a faithful continuation, though not necessarily the same words; with a
grammar that fallback is not possible and the request fails with `ProviderError`.

Sections: `Sampling`, `Job`, `Outcome`; `Engine` (loading, prompt, generation);
the sampler chain; `_Prefix` (skipping the partial text).
"""

from __future__ import annotations

import codecs
import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import llama_cpp
from llama_cpp import Llama
from llama_cpp._internals import LlamaSampler
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from tether.errors import ProviderError
from tether.providers.base import GenerationRequest
from tether.providers.llama_grammar import CALL_TRIGGER, Grammar, output_grammar
from tether.providers.llama_prompt import ToolPlan, chat_messages, template_tool

# Used when the GGUF has no chat template.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
PENALTY_LAST_N = 64
# llama.cpp cannot load two models at once: concurrent loads can end the process.
# One lock for the whole process, since several providers may load at the same time.
_LOADING = threading.Lock()


@dataclass(frozen=True, slots=True)
class Sampling:
    """`temperature` 0 is greedy; otherwise top-k, top-p, min-p, then a draw seeded
    with `seed`. `repeat_penalty` 1.0 is off."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repeat_penalty: float
    seed: int


@dataclass(frozen=True, slots=True)
class Job:
    request: GenerationRequest
    tools: ToolPlan
    sampling: Sampling
    max_tokens: int | None


@dataclass(frozen=True, slots=True)
class Outcome:
    finish: Literal["stop", "length", "cancelled"]
    input_tokens: int
    output_tokens: int


class _Diverged(Exception):
    """The regenerated output left the partial text it should repeat."""


class Engine:
    """One model instance: a `Llama` with its own context. Not thread-safe, except
    `count`, which only renders and tokenizes."""

    def __init__(self, llama: Llama) -> None:
        self.llama = llama
        self.generated = 0  # tokens sampled since loading (tests watch it)
        self._vocab = llama._model.vocab
        # llama.cpp may round the context up; llama-cpp-python's buffers keep the asked size.
        self.n_ctx = min(llama.n_ctx(), len(llama.input_ids))
        self._pieces: dict[int, bytes] = {}
        template = llama.metadata.get("tokenizer.chat_template") or CHATML
        eos, bos = llama.token_eos(), llama.token_bos()
        self._bos = llama._model.token_get_text(bos) if bos >= 0 else ""
        eos_text = llama._model.token_get_text(eos) if eos >= 0 else ""
        self._formatter = Jinja2ChatFormatter(template, eos_text, self._bos)
        # Templates that render tools in our call format get the tools themselves.
        self._template_tools = "tools" in template and "<tool_call>" in template

    def __repr__(self) -> str:
        return f"<Engine n_ctx={self.n_ctx} generated={self.generated}>"

    @classmethod
    def load(cls, path: str, n_ctx: int, n_threads: int) -> Engine:
        """Raises `ProviderError` when llama.cpp cannot load the file."""
        try:
            with _LOADING:
                llama = Llama(
                    model_path=path,
                    n_ctx=n_ctx,
                    n_batch=min(512, n_ctx),
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ProviderError(f"cannot load the GGUF file {path}: {exc}") from None
        return cls(llama)

    def close(self) -> None:
        self.llama.close()

    # --- the prompt -------------------------------------------------------------

    def prompt(self, request: GenerationRequest, tools: ToolPlan) -> list[int]:
        """The prompt's tokens: the chat template applied, then tokenized."""
        messages = chat_messages(request, tools, template_tools=self._template_tools)
        extra: dict[str, Any] = {}
        if self._template_tools and tools.offered:
            extra["tools"] = [template_tool(tool) for tool in tools.offered]
        try:
            text = self._formatter(messages=messages, **extra).prompt  # type: ignore[arg-type]
        except Exception as exc:  # Jinja raises many kinds; the template's own checks too
            raise ProviderError(
                f"cannot render these messages with the model's chat template: {exc}",
                code="invalid_prompt",
            ) from None
        add_bos = not (self._bos and text.startswith(self._bos))
        return self.llama.tokenize(text.encode(), add_bos=add_bos, special=True)

    def count(self, request: GenerationRequest, tools: ToolPlan) -> int:
        return len(self.prompt(request, tools))

    # --- generation --------------------------------------------------------------

    def generate(self, job: Job, emit: Callable[[str], None], stop: threading.Event) -> Outcome:
        """Generates `job`, calling `emit` with the text of each token. Raises
        `ProviderError` (prompt too long, grammar or continuation impossible)."""
        prompt = self.prompt(job.request, job.tools)
        n_ctx = self.n_ctx
        if len(prompt) >= n_ctx:
            raise ProviderError(
                f"cannot take this input: it is {len(prompt)} tokens and the model's context "
                f"(n_ctx) is {n_ctx}; shorten the input or raise n_ctx",
                code="invalid_prompt",
            )
        grammar = output_grammar(job.request.text_format, job.tools)
        partial = job.request.continuation
        try:
            with _Chain(self, job.sampling, grammar) as sampler:
                return self._run(prompt, sampler, job, emit, stop, partial)
        except _Diverged:
            if grammar is not None or partial is None:
                raise ProviderError(
                    "cannot continue this response exactly: the model no longer generates "
                    "the same partial text"
                ) from None
        # Fallback: the partial text as the start of the answer, then go on from there.
        prefill = self.llama.tokenize(partial.encode(), add_bos=False, special=False)
        if len(prompt) + len(prefill) >= n_ctx:
            raise ProviderError(
                "cannot continue this response: its partial text fills the model's context"
            )
        with _Chain(self, job.sampling, None) as sampler:
            return self._run(prompt + prefill, sampler, job, emit, stop, None, len(prefill))

    def _run(
        self,
        tokens: list[int],
        sampler: LlamaSampler,
        job: Job,
        emit: Callable[[str], None],
        stop: threading.Event,
        partial: str | None,
        count: int = 0,
    ) -> Outcome:
        """The token loop. `partial`: text to regenerate without emitting; `count`:
        output tokens already in `tokens` (a prefilled partial text)."""
        llama, vocab, limit = self.llama, self._vocab, job.max_tokens
        input_tokens = len(tokens) - count
        if not self._evaluate(tokens, stop):
            return Outcome("cancelled", input_tokens, count)
        skip = _Prefix(partial) if partial else None
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        n_ctx = self.n_ctx
        while True:
            if stop.is_set():
                return Outcome("cancelled", input_tokens, count)
            if (limit is not None and count >= limit) or llama.n_tokens >= n_ctx:
                finish: Literal["stop", "length"] = "length"
                break
            token = sampler.sample(llama._ctx, -1)
            self.generated += 1
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            count += 1
            text = decoder.decode(self._piece(token))
            if skip is not None:
                text = skip.feed(text)
                skip = None if skip.done else skip
            if text:
                emit(text)
            llama.eval([token])
        text = decoder.decode(b"", final=True)
        if skip is not None:
            text = skip.feed(text)
            if not skip.done:
                raise _Diverged  # the output ended before the partial text did
        if text:
            emit(text)
        return Outcome(finish, input_tokens, count)

    def _evaluate(self, tokens: list[int], stop: threading.Event) -> bool:
        """Evaluates the prompt from a clean context, a batch at a time; False if stopped."""
        llama = self.llama
        llama.reset()  # type: ignore[no-untyped-call]
        for start in range(0, len(tokens), llama.n_batch):
            if stop.is_set():
                return False
            llama.eval(tokens[start : start + llama.n_batch])
        return True

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            size = 64
            while True:
                buffer = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
                if n >= 0:
                    break
                size = -n
            piece = self._pieces[token] = buffer.raw[:n]
        return piece


class _Chain:
    """The sampler chain of a job (a context manager that frees it): repetition
    penalty, grammar, then greedy or seeded sampling."""

    def __init__(self, engine: Engine, sampling: Sampling, grammar: Grammar | None) -> None:
        chain = self.sampler = LlamaSampler()  # type: ignore[no-untyped-call]
        llama = engine.llama
        if sampling.repeat_penalty != 1.0:
            chain.add_penalties(llama.n_vocab(), PENALTY_LAST_N, sampling.repeat_penalty, 0, 0)
        if grammar is not None:
            _add_grammar(chain, engine, grammar)
        if sampling.temperature <= 0:
            chain.add_greedy()  # type: ignore[no-untyped-call]
        else:
            chain.add_top_k(sampling.top_k)
            chain.add_top_p(sampling.top_p, 1)
            chain.add_min_p(sampling.min_p, 1)
            chain.add_temp(sampling.temperature)
            chain.add_dist(sampling.seed)

    def __enter__(self) -> LlamaSampler:
        return self.sampler

    def __exit__(self, *exc: object) -> None:
        self.sampler.close()  # type: ignore[no-untyped-call]


def _add_grammar(chain: LlamaSampler, engine: Engine, grammar: Grammar) -> None:
    text, root = grammar.text.encode(), b"root"
    vocab = engine.llama._model.vocab
    if grammar.lazy:
        patterns = (ctypes.c_char_p * 1)(CALL_TRIGGER.encode())
        no_tokens = (llama_cpp.llama_token * 0)()
        sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            vocab, text, root, patterns, 1, no_tokens, 0
        )
    else:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, text, root)
    if not sampler:
        chain.close()  # type: ignore[no-untyped-call]
        raise ProviderError("cannot use the grammar built for this request (llama.cpp rejected it)")
    llama_cpp.llama_sampler_chain_add(chain.sampler, sampler)


class _Prefix:
    """Drops regenerated text until it has repeated `text`; raises `_Diverged` if it
    departs from it."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._seen = ""
        self.done = False

    def feed(self, piece: str) -> str:
        """What of `piece` comes after the partial text ("" while still inside it)."""
        if self.done:
            return piece
        self._seen += piece
        if len(self._seen) < len(self._text):
            if not self._text.startswith(self._seen):
                raise _Diverged
            return ""
        if not self._seen.startswith(self._text):
            raise _Diverged
        self.done = True
        return self._seen[len(self._text) :]
