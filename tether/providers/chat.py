"""The `chat` provider: any OpenAI-compatible Chat Completions upstream.

Works with vLLM, Ollama, llama.cpp server, LM Studio and OpenAI itself. One
`GenerationRequest` becomes one streaming `POST {base_url}/chat/completions`:

- `instructions` become a first `system` message; every input message becomes
  `{"role", "content"}` with `developer` sent as `system` and the content the
  concatenated text of its text parts. Other parts or item types raise `ProviderError`.
- `max_tokens`, `temperature` and `top_p` are sent only when set.
- The SSE answer is parsed as it arrives, one JSON object per `data:` line, until
  `data: [DONE]` or the end of the body. Each upstream chunk with text becomes one
  `TextDelta` (one event for the client, as the upstream streamed it); then come
  `Usage` (if the upstream sent it) and one
  `Finish` (`stop`, `length` or `content_filter`; any other reason counts as `stop`).

Every failure is a `ProviderError` whose message names the Tether model: an HTTP
status >= 400 (`code="rate_limit_exceeded"` for 429, else `server_error`; `status` set),
an unreachable upstream, a timeout, a connection dropped mid-stream, an `error` chunk,
malformed JSON, or a stream that ends without a finish reason. The HTTP client is
`tether.providers.http` (lean, keep-alive); none of its exceptions escape. The API
key is sent as `Authorization: Bearer …` and never appears in a message or a repr.

Sections: options (`ChatConfig`), the provider, the request body, the SSE reader.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from tether.domain.types import JSONObject
from tether.errors import ConfigError, ProviderError
from tether.providers.base import Delta, Finish, FinishReason, GenerationRequest, TextDelta, Usage
from tether.providers.http import (
    ConnectFailed,
    HTTPClient,
    ReadTimedOut,
    StreamingResponse,
    UpstreamHTTPError,
)

_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "base_url": (str,),
    "api_key": (str,),
    "api_key_env": (str,),
    "upstream_model": (str,),
    "timeout_seconds": (int, float),
    "headers": (dict,),
}
_CONNECT_TIMEOUT = 10.0
_ERROR_BODY_LIMIT = 64 * 1024
_MAX_LINE = 8 * 1024 * 1024
_MIN_REDACTED_KEY = 8
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
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
        for key, value in options.items():
            if key not in _OPTION_TYPES:
                known = ", ".join(sorted(_OPTION_TYPES))
                raise ConfigError(f"{where}: unknown option '{key}'; known options: {known}.")
            types = _OPTION_TYPES[key]
            if not isinstance(value, types) or isinstance(value, bool):
                kind = "a number" if key == "timeout_seconds" else types[0].__name__
                raise ConfigError(f"{where}: option '{key}' must be {kind}.")
        base_url = options.get("base_url")
        if not base_url:
            raise ConfigError(
                f"{where}: option 'base_url' is required, e.g. 'http://127.0.0.1:8000/v1'."
            )
        try:
            url = urlsplit(base_url)
            url.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ConfigError(f"{where}: option 'base_url' is not a valid URL ({exc}).") from None
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"{where}: option 'base_url' must be an http:// or https:// URL.")
        timeout = float(options.get("timeout_seconds", 600.0))
        if timeout <= 0:
            raise ConfigError(f"{where}: option 'timeout_seconds' must be positive.")
        headers = options.get("headers", {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise ConfigError(f"{where}: option 'headers' must map header names to strings.")
        return cls(
            model_name=model_name,
            base_url=base_url.rstrip("/"),
            upstream_model=options.get("upstream_model") or model_name,
            api_key=_api_key(where, options, os.environ if environ is None else environ),
            timeout_seconds=timeout,
            headers=dict(headers),
        )


def _api_key(where: str, options: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    if "api_key" in options and "api_key_env" in options:
        raise ConfigError(f"{where}: set option 'api_key' or 'api_key_env', not both.")
    env_name = options.get("api_key_env")
    if env_name is None:
        key: str | None = options.get("api_key")
        return key
    value = environ.get(env_name)
    if not value:
        raise ConfigError(
            f"{where}: option 'api_key_env' names the environment variable '{env_name}',"
            " which is not set."
        )
    return value


# --- the provider ----------------------------------------------------------------------


class ChatProvider:
    """A `ModelProvider` over one Chat Completions upstream, with one pooled client."""

    def __init__(self, config: ChatConfig) -> None:
        self.config = config
        headers = {
            **config.headers,
            "accept": "text/event-stream",
            "content-type": "application/json",
        }
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._client = HTTPClient(
            config.base_url,
            headers,
            connect_timeout=min(_CONNECT_TIMEOUT, config.timeout_seconds),
            read_timeout=config.timeout_seconds,
        )

    @classmethod
    def from_options(
        cls,
        model_name: str,
        options: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> ChatProvider:
        """Build from `[[models]]` options; raises `ConfigError` if they are wrong."""
        return cls(ChatConfig.from_options(model_name, options, environ=environ))

    def __repr__(self) -> str:
        c = self.config
        return f"ChatProvider({c.model_name!r} → {c.upstream_model!r} at {c.base_url})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Generate via the upstream; raises `ProviderError` on any failure, also mid-stream."""
        body = orjson.dumps(self._body(request))
        reader = _SSEReader(self)
        started = False
        try:
            async with self._client.post("/chat/completions", body) as response:
                started = True
                if response.status >= 400:
                    raise await self._status_error(response)
                async for chunk in response.chunks():
                    for text in reader.feed(chunk):
                        yield TextDelta(text)
                    if reader.done:
                        break
                else:
                    for text in reader.feed(b"\n"):  # a last line without its newline
                        yield TextDelta(text)
        except UpstreamHTTPError as exc:
            raise self._transport_error(exc, started=started) from None
        if reader.finish_reason is None:
            raise self.error(
                "failed: upstream closed the stream before finishing (no finish_reason)"
            )
        if reader.usage is not None:
            yield reader.usage
        yield Finish(_FINISH_REASONS.get(reader.finish_reason, "stop"))

    def error(
        self, detail: str, *, code: str = "server_error", status: int | None = None
    ) -> ProviderError:
        """A `ProviderError` naming this model, with the API key redacted from `detail`."""
        key = self.config.api_key
        # A very short key cannot be told apart from ordinary text; redacting it would
        # mangle the message without protecting anything.
        if key and len(key) >= _MIN_REDACTED_KEY:
            detail = detail.replace(key, "***")
        return ProviderError(
            f"Upstream model '{self.config.model_name}' {detail}", code=code, status=status
        )

    async def _status_error(self, response: StreamingResponse) -> ProviderError:
        message = _error_message(await response.read(_ERROR_BODY_LIMIT))
        status = response.status
        code = "rate_limit_exceeded" if status == 429 else "server_error"
        return self.error(f"returned HTTP {status}: {message}", code=code, status=status)

    def _transport_error(self, exc: UpstreamHTTPError, *, started: bool) -> ProviderError:
        at = f"at {_without_userinfo(self.config.base_url)}"
        if isinstance(exc, ConnectFailed):
            return self.error(f"could not be reached {at}: {exc}")
        if isinstance(exc, ReadTimedOut):
            seconds = f"{self.config.timeout_seconds:g}"
            if started:
                return self.error(f"{at} stalled mid-stream: no data for {seconds} seconds")
            return self.error(f"{at} did not answer within {seconds} seconds")
        if started:
            return self.error(f"{at} dropped the connection mid-stream: {exc}")
        return self.error(f"could not be reached {at}: {exc}")

    # --- the request body --------------------------------------------------------------

    def _body(self, request: GenerationRequest) -> JSONObject:
        messages: list[JSONObject] = []
        if request.instructions:
            messages.append({"role": "system", "content": request.instructions})
        messages.extend(self._message(item) for item in request.input_items)
        body: JSONObject = {
            "model": self.config.upstream_model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.max_output_tokens is not None:
            body["max_tokens"] = request.max_output_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        return body

    def _message(self, item: JSONObject) -> JSONObject:
        item_type = item.get("type", "message")
        if item_type != "message":
            raise self.error(
                f"cannot take input items of type '{item_type}'", code="invalid_prompt"
            )
        content = item.get("content", [])
        if isinstance(content, str):
            text = content
        else:
            for part in content:
                if part.get("type") not in _TEXT_PARTS:
                    raise self.error(
                        f"cannot take content parts of type '{part.get('type')}'; only text",
                        code="invalid_prompt",
                    )
            text = "".join(part.get("text", "") for part in content)
        role = item["role"]
        return {"role": "system" if role == "developer" else role, "content": text}


def _error_message(raw: bytes) -> str:
    """`error.message` of an OpenAI-shaped body, else the start of the text."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):  # Ollama: {"error": "model not found"}
            return error
    text = raw.decode("utf-8", errors="replace").strip()[:500]
    return text or "(empty body)"


# --- the SSE reader ----------------------------------------------------------------------


class _SSEReader:
    """Turns the bytes of a Chat Completions SSE stream into text; remembers the finish
    reason and usage. This is the per-token hot path: one call per network read."""

    __slots__ = ("_buffer", "_provider", "done", "finish_reason", "usage")

    def __init__(self, provider: ChatProvider) -> None:
        self._provider = provider
        self._buffer = b""
        self.done = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> list[str]:
        """The texts of the complete `data:` lines so far, one per upstream chunk (empty
        ones left out); sets `done` at `data: [DONE]`."""
        if self.done:
            return []
        if self._buffer:
            chunk = self._buffer + chunk
        lines = chunk.splitlines()
        if chunk.endswith((b"\n", b"\r")):
            self._buffer = b""
        elif lines:
            self._buffer = lines.pop()
            if len(self._buffer) > _MAX_LINE:
                raise self._provider.error(f"sent an SSE line longer than {_MAX_LINE} bytes")
        texts: list[str] = []
        for line in lines:
            # Comments, `event:`, `id:` and blank lines carry nothing for us.
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                break
            if text := self._event(data):
                texts.append(text)
        return texts

    def _event(self, data: bytes) -> str:
        try:
            event = orjson.loads(data)
            if error := event.get("error"):
                message = error.get("message") if isinstance(error, dict) else error
                raise self._provider.error(f"failed mid-stream: {message}")
            text = ""
            if choices := event.get("choices"):
                choice = choices[0]
                if delta := choice.get("delta"):
                    text = delta.get("content") or ""
                if (reason := choice.get("finish_reason")) is not None:
                    self.finish_reason = reason
            if usage := event.get("usage"):
                details = usage.get("completion_tokens_details") or {}
                self.usage = Usage(
                    int(usage.get("prompt_tokens") or 0),
                    int(usage.get("completion_tokens") or 0),
                    int(details.get("reasoning_tokens") or 0),
                )
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            detail = data[:200].decode("utf-8", errors="replace")
            raise self._provider.error(f"sent a malformed stream chunk ({exc}): {detail}") from None
        if not isinstance(text, str):
            raise self._provider.error("sent a non-string delta content")
        return text


def _without_userinfo(url: str) -> str:
    """The URL for messages: credentials written into it (user:pass@) never show."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
