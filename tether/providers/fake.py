"""`fake`: the built-in development model. Deterministic, no weights, no network.

It is for trying Tether out, for tests and for benchmarks — not a language model.
Output, by `mode`:
- `lorem` (default): `output_tokens` words cycled from a fixed lorem-ipsum list;
- `text`: the words of the `text` option;
- `echo`: the words of the last user message.
Each word (with its following space) is one token. `tokens_per_second` paces the
stream (0 = as fast as possible), `first_token_delay_ms` delays the first token,
and `fail_after_tokens` raises a provider error after that many tokens, to
exercise failure paths. Usage counts words: a documented estimate, not a tokenizer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from tether.domain.items import message_text
from tether.errors import ConfigError, ProviderError
from tether.providers.base import Delta, Finish, GenerationRequest, TextDelta, Usage

LOREM = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "ut",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
)
YIELD_EVERY = 32  # tokens between cooperative yields when unpaced


@dataclass(frozen=True, slots=True)
class FakeConfig:
    mode: str = "lorem"
    text: str = ""
    output_tokens: int = 32
    tokens_per_second: float = 0.0
    first_token_delay_ms: float = 0.0
    fail_after_tokens: int | None = None


class FakeProvider:
    def __init__(self, config: FakeConfig) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"<FakeProvider {self.config}>"

    @classmethod
    def from_options(cls, model_name: str, options: Mapping[str, Any]) -> FakeProvider:
        known = {f.name: f for f in fields(FakeConfig)}
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key not in known:
                raise ConfigError(
                    f"Model {model_name!r}: unknown option {key!r} for the fake provider "
                    f"(known: {', '.join(sorted(known))})"
                )
            values[key] = value
        config = FakeConfig(**values)
        if config.mode not in ("lorem", "text", "echo"):
            raise ConfigError(f"Model {model_name!r}: mode must be lorem, text or echo")
        if config.mode == "text" and not config.text:
            raise ConfigError(f"Model {model_name!r}: mode 'text' needs a non-empty 'text'")
        return cls(config)

    def tokens(self, request: GenerationRequest) -> list[str]:
        config = self.config
        if config.mode == "text":
            words = config.text.split(" ")
        elif config.mode == "echo":
            users = [i for i in request.input_items if i.get("role") == "user"]
            words = message_text(users[-1]).split(" ") if users else []
        else:
            words = [LOREM[i % len(LOREM)] for i in range(config.output_tokens)]
        return [w + " " for w in words[:-1]] + words[-1:]

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        config = self.config
        tokens = self.tokens(request)
        limit = request.max_output_tokens
        cut = limit is not None and len(tokens) > limit
        if cut:
            tokens = tokens[:limit]
        loop = asyncio.get_running_loop()
        if config.first_token_delay_ms:
            await asyncio.sleep(config.first_token_delay_ms / 1000)
        start = loop.time()
        for index, token in enumerate(tokens):
            if config.fail_after_tokens is not None and index >= config.fail_after_tokens:
                raise ProviderError(
                    f"The fake model failed after {index} tokens, as configured "
                    "(fail_after_tokens)."
                )
            if config.tokens_per_second > 0:
                delay = start + index / config.tokens_per_second - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            yield TextDelta(token)
        yield Usage(input_tokens=_count_words(request), output_tokens=len(tokens))
        yield Finish("length" if cut else "stop")

    async def aclose(self) -> None:
        return None


def _count_words(request: GenerationRequest) -> int:
    texts = [message_text(item) for item in request.input_items]
    if request.instructions:
        texts.append(request.instructions)
    return sum(len(text.split()) for text in texts)
