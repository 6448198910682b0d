"""The `chat` provider: any OpenAI-compatible Chat Completions upstream.

Works with vLLM, Ollama, llama.cpp server, LM Studio, SGLang and OpenAI itself. One
`GenerationRequest` becomes one streaming `POST {base_url}/chat/completions`; the body
is built by `tether.providers.chat_messages` (messages, images, files, function calls
and their outputs, tools, JSON output formats, reasoning effort, logprobs; earlier
reasoning items are left out: Chat Completions has no field for them), and the SSE
answer is read by `tether.providers.chat_stream` into text, reasoning, refusal and
tool-call deltas. Then come `Usage` (if the upstream sent it) and one `Finish`
(`stop`, `length` or `content_filter`; `tool_calls` and any other reason count as
`stop`).

Every failure is a `ProviderError` whose message names the Tether model: input the
upstream cannot take (`code="invalid_prompt"`), an HTTP status >= 400
(`rate_limit_exceeded` for 429, else `server_error`; `status` set), an unreachable
upstream, a timeout, a connection dropped mid-stream, an `error` chunk, malformed JSON,
an SSE line over 8 MiB, or a stream that ends without a finish reason. The HTTP client
is `tether.providers.http` (lean, keep-alive); none of its exceptions escape. The API
key is sent as `Authorization: Bearer …` and never appears in a message or a repr.

Retries and timeouts (`tether.providers.retry`): a call that fails before its first
token — no connection, HTTP 429/500/502/503/504, a connection dropped before the
first token — is retried with exponential backoff and jitter, honouring Retry-After,
up to `max_retries` (default 2) within `retry_budget_seconds` (default 30); nothing
is retried after the first token. `first_token_timeout_seconds` bounds the wait for
the first token and `inter_token_timeout_seconds` the silence after it (both default
to `timeout_seconds`, 600); a hung upstream fails with a message naming the option.

With `continue_final_message = true` (vLLM), a response whose worker died inside an
assistant message continues it: the partial text goes upstream as a final assistant
message with `continue_final_message: true, add_generation_prompt: false`.

With the option `tokenize_url` (vLLM: `http://HOST:PORT/tokenize`), the provider also
counts input tokens with the model's own tokenizer (`TokenCounter`): it posts
`{"model", "messages", "tools"?}` there and reads `count` from the answer.

Sections: options (`ChatConfig`), the provider, token counting, error bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson

from tether.domain.types import JSONObject
from tether.errors import ConfigError, ProviderError
from tether.providers.base import Delta, Finish, FinishReason, GenerationRequest
from tether.providers.chat_messages import chat_body, chat_messages, chat_tools
from tether.providers.chat_stream import ChatStreamReader
from tether.providers.http import UpstreamHTTPError
from tether.providers.retry import (
    OPTION_TYPES,
    RetryPolicy,
    Timeouts,
)
from tether.providers.upstream import (
    UpstreamProvider,
    check_url,
    common_options,
    error_message,
    without_userinfo,
)

P = ParamSpec("P")
T = TypeVar("T")

_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "base_url": (str,),
    "api_key": (str,),
    "api_key_env": (str,),
    "upstream_model": (str,),
    "timeout_seconds": (int, float),
    "headers": (dict,),
    "tokenize_url": (str,),
    "continue_final_message": (bool,),
    **OPTION_TYPES,
}
_PATH = "/chat/completions"
_TOKENIZE_BODY_LIMIT = 32 * 1024 * 1024  # vLLM answers every token id, not only the count
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "stop",
    "function_call": "stop",
}


# --- options ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """The parsed `[[models]]` options of one `chat` model."""

    model_name: str
    base_url: str
    upstream_model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_seconds: float = 600.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    tokenize_url: str | None = None
    continue_final_message: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_options(
        cls,
        model_name: str,
        options: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> ChatConfig:
        """Parse the options; raises `ConfigError` naming the model and the bad key."""
        where = f"Model '{model_name}' (provider 'chat')"
        common = common_options(
            where,
            model_name,
            options,
            _OPTION_TYPES,
            example_url="http://127.0.0.1:8000/v1",
            environ=environ,
        )
        tokenize_url = options.get("tokenize_url")
        if tokenize_url is not None:
            check_url(where, "tokenize_url", tokenize_url)
        return cls(
            model_name=model_name,
            tokenize_url=tokenize_url,
            continue_final_message=options.get("continue_final_message", False),
            **common,
        )


# --- the provider ----------------------------------------------------------------------


class ChatProvider(UpstreamProvider[ChatStreamReader]):
    """A `ModelProvider` over one Chat Completions upstream, with one pooled client.

    Built from options with a `tokenize_url`, it is a `TokenizingChatProvider`, which
    can also count tokens."""

    path = _PATH
    accept = "text/event-stream"
    config: ChatConfig

    def __init__(self, config: ChatConfig) -> None:
        super().__init__(config)
        # Crash continuation sends the partial message as an assistant prefill
        # (vLLM: continue_final_message); only upstreams that support it opt in.
        self.supports_continuation = config.continue_final_message

    @classmethod
    def from_options(
        cls,
        model_name: str,
        options: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> ChatProvider:
        """Build from `[[models]]` options; raises `ConfigError` if they are wrong."""
        config = ChatConfig.from_options(model_name, options, environ=environ)
        if config.tokenize_url:
            return TokenizingChatProvider(config)
        return cls(config)

    def _request_body(self, request: GenerationRequest) -> bytes:
        return orjson.dumps(self._mapped(chat_body, request, self.config.upstream_model))

    def _new_reader(self) -> ChatStreamReader:
        return ChatStreamReader(self.error)

    def _ended(self, reader: ChatStreamReader) -> Iterator[Delta]:
        if reader.finish_reason is None:
            raise self.error(
                "failed: upstream closed the stream before finishing (no finish_reason)"
            )
        yield from reader.close()
        if reader.usage is not None:
            yield reader.usage
        yield Finish(_FINISH_REASONS.get(reader.finish_reason, "stop"))

    def _mapped(self, build: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`build(…)`, a mapping of the request, its errors named after this model."""
        try:
            return build(*args, **kwargs)
        except ProviderError as exc:
            raise self.error(exc.message, code=exc.code) from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise self.error(
                f"cannot take a malformed input item or setting ({type(exc).__name__}: {exc})",
                code="invalid_prompt",
            ) from None


# --- token counting --------------------------------------------------------------------


class TokenizingChatProvider(ChatProvider):
    """A `ChatProvider` that is also a `TokenCounter`, through the upstream's tokenize
    endpoint (`tokenize_url`, e.g. vLLM's `POST /tokenize`)."""

    def __init__(self, config: ChatConfig) -> None:
        super().__init__(config)
        if not config.tokenize_url:
            raise ConfigError(f"Model '{config.model_name}' (provider 'chat') has no tokenize_url.")
        url = urlsplit(config.tokenize_url)
        self._tokenize_path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._tokenize_at = f"at {without_userinfo(config.tokenize_url)}"
        origin = urlunsplit((url.scheme, url.netloc, "", "", ""))
        self._tokenizer = self._http_client(origin, "application/json", config.timeout_seconds)

    async def aclose(self) -> None:
        await self._tokenizer.aclose()
        await super().aclose()

    async def count_tokens(self, request: GenerationRequest) -> int:
        """The input tokens of `request` (chat template included) as the upstream's
        tokenizer counts them; raises `ProviderError` if it cannot."""
        body: JSONObject = {
            "model": self.config.upstream_model,
            "messages": self._mapped(chat_messages, request),
        }
        if request.tools:
            body["tools"] = self._mapped(chat_tools, request.tools)
        at = self._tokenize_at
        try:
            async with self._tokenizer.post(self._tokenize_path, orjson.dumps(body)) as response:
                raw = await response.read(_TOKENIZE_BODY_LIMIT)
                status = response.status
        except UpstreamHTTPError as exc:
            raise self.error(f"could not count tokens: tokenizer {at} failed: {exc}") from None
        if status >= 400:
            message = error_message(raw)
            raise self.error(
                f"could not count tokens: tokenizer {at} returned HTTP {status}: {message}",
                status=status,
            )
        try:
            count = orjson.loads(raw)["count"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            count = None
        if not isinstance(count, int) or isinstance(count, bool):
            detail = raw[:200].decode("utf-8", errors="replace")
            raise self.error(
                f"could not count tokens: tokenizer {at} answered without a 'count': {detail}"
            )
        return count
