"""What the two HTTP upstream providers (`chat`, `responses`) share: parsing their
common options, the streamed POST with its retries and timeouts (`UpstreamProvider`),
and turning upstream failures into `ProviderError`s that name the Tether model and
never show the API key or credentials in a URL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson

from tether.errors import ConfigError, ProviderError
from tether.providers.base import Delta, GenerationRequest
from tether.providers.http import HTTPClient, StreamingResponse, UpstreamHTTPError
from tether.providers.retry import (
    Attempts,
    RetryPolicy,
    Timeouts,
    status_failure,
    transport_failure,
)

ERROR_BODY_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 10.0
MIN_REDACTED_KEY = 8  # a shorter key cannot be told apart from ordinary text


# --- options ---------------------------------------------------------------------------


def common_options(
    where: str,
    model_name: str,
    options: Mapping[str, Any],
    option_types: Mapping[str, tuple[type, ...]],
    *,
    example_url: str,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check every option against `option_types`, then parse the options both providers
    have: the keyword arguments `base_url`, `upstream_model`, `api_key`,
    `timeout_seconds`, `headers`, `timeouts`, `retry` of their config classes.
    Raises `ConfigError` naming the model (`where`) and the bad key."""
    for key, value in options.items():
        if key not in option_types:
            known = ", ".join(sorted(option_types))
            raise ConfigError(f"{where}: unknown option '{key}'; known options: {known}.")
        types = option_types[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(f"{where}: option '{key}' must be {option_kind(types)}.")
    base_url = options.get("base_url")
    if not base_url:
        raise ConfigError(f"{where}: option 'base_url' is required, e.g. '{example_url}'.")
    check_url(where, "base_url", base_url)
    timeout = float(options.get("timeout_seconds", 600.0))
    if timeout <= 0:
        raise ConfigError(f"{where}: option 'timeout_seconds' must be positive.")
    headers = options.get("headers", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ConfigError(f"{where}: option 'headers' must map header names to strings.")
    return {
        "base_url": base_url.rstrip("/"),
        "upstream_model": options.get("upstream_model") or model_name,
        "api_key": _api_key(where, options, os.environ if environ is None else environ),
        "timeout_seconds": timeout,
        "headers": dict(headers),
        "timeouts": Timeouts.from_options(where, options, timeout),
        "retry": RetryPolicy.from_options(where, options),
    }


def option_kind(types: tuple[type, ...]) -> str:
    """What an option of these types must be, for error messages."""
    if float in types:
        return "a number"
    return {int: "an integer", bool: "true or false", str: "a string"}.get(
        types[0], types[0].__name__
    )


def check_url(where: str, key: str, value: str) -> None:
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"{where}: option '{key}' is not a valid URL ({exc}).") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"{where}: option '{key}' must be an http:// or https:// URL.")


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


# --- errors ----------------------------------------------------------------------------


def model_error(
    model_name: str,
    api_key: str | None,
    detail: str,
    *,
    code: str = "server_error",
    status: int | None = None,
) -> ProviderError:
    """A `ProviderError` naming the Tether model, with the API key redacted from `detail`."""
    # A very short key cannot be told apart from ordinary text; redacting it would
    # mangle the message without protecting anything.
    if api_key and len(api_key) >= MIN_REDACTED_KEY:
        detail = detail.replace(api_key, "***")
    return ProviderError(f"Upstream model '{model_name}' {detail}", code=code, status=status)


async def status_detail(response: StreamingResponse) -> tuple[str, str, int]:
    """For an HTTP status >= 400: the detail for `model_error`, its code, the status."""
    message = error_message(await response.read(ERROR_BODY_LIMIT))
    status = response.status
    code = "rate_limit_exceeded" if status == 429 else "server_error"
    return f"returned HTTP {status}: {message}", code, status


def error_message(raw: bytes) -> str:
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


def without_userinfo(url: str) -> str:
    """The URL for messages: credentials written into it (user:pass@) never show."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# --- the provider ----------------------------------------------------------------------


class UpstreamConfig(Protocol):
    """The options both providers' configs have (`common_options`)."""

    @property
    def model_name(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def upstream_model(self) -> str: ...
    @property
    def api_key(self) -> str | None: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def timeouts(self) -> Timeouts: ...
    @property
    def retry(self) -> RetryPolicy: ...


class StreamReader(Protocol):
    """Parses an upstream's SSE body into deltas, chunk by chunk."""

    done: bool

    def feed(self, chunk: bytes) -> list[Delta]: ...


R = TypeVar("R", bound=StreamReader)


class UpstreamProvider(Generic[R]):
    """A `ModelProvider` over one HTTP upstream that streams SSE: one streamed POST per
    generation, retried with backoff while no token came (`retry.Attempts`), bounded
    by the first-token and inter-token timeouts. A subclass says where to post, what
    body, how to read the stream and what its end means."""

    path: str  # under `base_url`
    accept: str  # the Accept header of the stream's POST
    config: UpstreamConfig

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._client = self._http_client(
            config.base_url, self.accept, config.timeouts.inter_token
        )

    def __repr__(self) -> str:
        c = self.config
        return f"{type(self).__name__}({c.model_name!r} → {c.upstream_model!r} at {c.base_url})"

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- what a provider says -------------------------------------------------------

    def _request_body(self, request: GenerationRequest) -> bytes:
        raise NotImplementedError

    def _new_reader(self) -> R:
        raise NotImplementedError

    def _ended(self, reader: R) -> Iterable[Delta]:
        """The deltas after the stream's last chunk; raises `ProviderError` for a
        stream that did not end as it should."""
        raise NotImplementedError

    # --- the stream -----------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Generate via the upstream; raises `ProviderError` on any failure, also mid-stream
        (after yielding the deltas that came before it). Failures before the first delta
        are retried."""
        body = self._request_body(request)
        attempts = Attempts(self.config.retry)
        loop = asyncio.get_running_loop()
        while True:
            reader = self._new_reader()
            emitted = False
            deadline = loop.time() + self.config.timeouts.first_token
            try:
                async with self._client.post(self.path, body, deadline=deadline) as response:
                    if response.status >= 400:
                        raise status_failure(await self._status_error(response), response.headers)
                    async for chunk in response.chunks():
                        deltas = reader.feed(chunk)
                        if not emitted and deltas:
                            # The first token: from now on only silence times out.
                            emitted, response.deadline = True, None
                        for delta in deltas:
                            yield delta
                        if reader.done:
                            break
                    else:
                        for delta in reader.feed(b"\n"):  # a last line without its newline
                            yield delta
                break
            except UpstreamHTTPError as exc:
                failure = self._transport_error(exc, emitted=emitted)
            except ProviderError as exc:
                failure = exc
            await attempts.failed(failure)
        for delta in self._ended(reader):
            yield delta

    # --- errors and clients ---------------------------------------------------------

    def error(
        self, detail: str, *, code: str = "server_error", status: int | None = None
    ) -> ProviderError:
        """A `ProviderError` naming this model, with the API key redacted from `detail`."""
        config = self.config
        return model_error(config.model_name, config.api_key, detail, code=code, status=status)

    async def _status_error(self, response: StreamingResponse) -> ProviderError:
        detail, code, status = await status_detail(response)
        return self.error(detail, code=code, status=status)

    def _transport_error(self, exc: UpstreamHTTPError, *, emitted: bool) -> ProviderError:
        at = f"at {without_userinfo(self.config.base_url)}"
        return transport_failure(self.error, at, self.config.timeouts, exc, emitted=emitted)

    def _http_client(self, url: str, accept: str, read_timeout: float) -> HTTPClient:
        config = self.config
        headers = {**config.headers, "accept": accept, "content-type": "application/json"}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        return HTTPClient(
            url,
            headers,
            connect_timeout=min(CONNECT_TIMEOUT, config.timeout_seconds),
            read_timeout=read_timeout,
        )
