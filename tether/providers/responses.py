"""The `responses` provider: any Responses API upstream (OpenAI, Azure OpenAI's v1
endpoint, vLLM, Ollama, another Tether).

Tether keeps the state: every turn is one streaming `POST {base_url}/responses` with
`stream: true`, `store: false` (the `upstream_store` option turns it on) and the whole
context as `input`, so `previous_response_id`, resume and cancel work the same whether
or not the upstream stores anything. The upstream's events become deltas (see
`tether.providers.responses_stream`); the runner turns them into Tether's own events,
with Tether's ids and sequence numbers.

The input items are Tether's normalized items, whose ids (`msg_…`, `fc_…`) the
upstream has never seen; one that does not store answers 404 for an id it does not
know. So:
- `message`, `function_call` and `function_call_output` items are sent without
  their `id` and `status` (both optional on input; some upstreams reject `status`);
- `reasoning` items are sent only when they carry `encrypted_content` (keeping their
  `id`, which the input type requires; the upstream reads the encrypted content, it
  does not look the id up): without it they mean nothing to a model that did not
  write them, and a stateless upstream cannot resolve them;
- items of any other type (hosted tool calls, as an earlier turn's upstream gave them)
  are sent as they are; so are hosted tools in `tools` (`passes_hosted_tools`).

The request takes `instructions`, `max_output_tokens`, `temperature`, `top_p`, the
function `tools` with `tool_choice` and `parallel_tool_calls`, `max_tool_calls`,
`text.format`, `reasoning`, `top_logprobs`, `include` and the `extra` settings
(`user`, `safety_identifier`, `prompt_cache_key`, `service_tier`, `metadata`), each
only when set. `count_tokens` asks `POST {base_url}/responses/input_tokens` (the keys
that endpoint takes: model, input, instructions, tools, tool choice, text, reasoning).

Every failure is a `ProviderError` whose message names the Tether model, with the
same HTTP and transport mapping as the `chat` provider (429 → `rate_limit_exceeded`,
else `server_error`); the API key never appears in a message or a repr.

Retries and timeouts are the `chat` provider's (`tether.providers.retry`): a stream
that fails before its first token — no connection, HTTP 429/500/502/503/504, a
connection dropped before the first token — is retried with exponential backoff and
jitter, honouring Retry-After, up to `max_retries` (default 2) within
`retry_budget_seconds` (default 30); nothing is retried after the first token (the
upstream's `response.created` and other events without content are no token).
`first_token_timeout_seconds` bounds the wait for the first token and
`inter_token_timeout_seconds` the silence after it (both default to
`timeout_seconds`, 600).

Sections: options (`ResponsesConfig`), the provider, the request body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from tether.domain.types import JSONObject
from tether.errors import ConfigError
from tether.providers.base import Delta, Finish, GenerationRequest
from tether.providers.http import (
    ReadTimedOut,
    UpstreamHTTPError,
)
from tether.providers.responses_stream import ResponsesStreamReader
from tether.providers.retry import (
    OPTION_TYPES,
    RetryPolicy,
    Timeouts,
)
from tether.providers.upstream import (
    ERROR_BODY_LIMIT,
    UpstreamProvider,
    common_options,
    error_message,
    without_userinfo,
)

_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "base_url": (str,),
    "api_key": (str,),
    "api_key_env": (str,),
    "upstream_model": (str,),
    "timeout_seconds": (int, float),
    "headers": (dict,),
    "upstream_store": (bool,),
    **OPTION_TYPES,
}
_EXTRA_KEYS = ("user", "safety_identifier", "prompt_cache_key", "service_tier", "metadata")
_WITHOUT_IDS = frozenset({"message", "function_call", "function_call_output"})


# --- options ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponsesConfig:
    """The parsed `[[models]]` options of one `responses` model."""

    model_name: str
    base_url: str
    upstream_model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_seconds: float = 600.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    upstream_store: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_options(
        cls,
        model_name: str,
        options: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> ResponsesConfig:
        """Parse the options; raises `ConfigError` naming the model and the bad key."""
        where = f"Model '{model_name}' (provider 'responses')"
        common = common_options(
            where,
            model_name,
            options,
            _OPTION_TYPES,
            example_url="https://api.openai.com/v1",
            environ=environ,
        )
        if urlsplit(common["base_url"]).query:
            raise ConfigError(
                f"{where}: option 'base_url' must not have a query string; for Azure OpenAI"
                " use the v1 endpoint 'https://RESOURCE.openai.azure.com/openai/v1'."
            )
        return cls(
            model_name=model_name,
            upstream_store=options.get("upstream_store", False),
            **common,
        )


# --- the provider ----------------------------------------------------------------------


class ResponsesProvider(UpstreamProvider[ResponsesStreamReader]):
    """A `ModelProvider` (and `TokenCounter`) over one Responses API upstream, with one
    pooled client."""

    # Hosted tools (web_search, mcp, …) and their items go to the upstream as they are.
    passes_hosted_tools = True
    path = "/responses"
    accept = "text/event-stream, application/json"
    config: ResponsesConfig

    @classmethod
    def from_options(
        cls,
        model_name: str,
        options: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> ResponsesProvider:
        """Build from `[[models]]` options; raises `ConfigError` if they are wrong."""
        return cls(ResponsesConfig.from_options(model_name, options, environ=environ))

    def _request_body(self, request: GenerationRequest) -> bytes:
        return orjson.dumps(self._body(request))

    def _new_reader(self) -> ResponsesStreamReader:
        return ResponsesStreamReader(self.error)

    def _ended(self, reader: ResponsesStreamReader) -> Iterator[Delta]:
        if reader.failure is not None:
            raise reader.failure
        if reader.finish is None:
            raise self.error(
                "failed: upstream closed the stream before finishing (no response.completed,"
                " response.incomplete or response.failed event)"
            )
        if reader.usage is not None:
            yield reader.usage
        yield Finish(reader.finish)

    async def count_tokens(self, request: GenerationRequest) -> int:
        """The upstream's count of the request's input tokens; raises `ProviderError` when
        the upstream cannot count (e.g. vLLM and Ollama have no such endpoint)."""
        body = orjson.dumps(self._count_body(request))
        deadline = asyncio.get_running_loop().time() + self.config.timeout_seconds
        try:
            async with self._client.post(
                "/responses/input_tokens", body, deadline=deadline
            ) as response:
                if response.status in (404, 405):
                    message = error_message(await response.read(ERROR_BODY_LIMIT))
                    raise self.error(
                        "cannot count input tokens: POST /responses/input_tokens answered"
                        f" HTTP {response.status}: {message}",
                        status=response.status,
                    )
                if response.status >= 400:
                    raise await self._status_error(response)
                raw = await response.read(ERROR_BODY_LIMIT)
        except UpstreamHTTPError as exc:
            at = f"at {without_userinfo(self.config.base_url)}"
            if isinstance(exc, ReadTimedOut):
                seconds = self.config.timeout_seconds
                raise self.error(
                    f"{at} did not count input tokens within {seconds:g} seconds"
                    " (option timeout_seconds)"
                ) from None
            raise self.error(f"could not be reached {at} to count input tokens: {exc}") from None
        try:
            tokens = orjson.loads(raw).get("input_tokens")
        except (orjson.JSONDecodeError, AttributeError):
            tokens = None
        if type(tokens) is not int:
            detail = raw[:200].decode("utf-8", errors="replace")
            raise self.error(f"answered /responses/input_tokens without 'input_tokens': {detail}")
        return tokens

    # --- the request body --------------------------------------------------------------

    def _count_body(self, request: GenerationRequest) -> JSONObject:
        """The keys both `/responses` and `/responses/input_tokens` take."""
        body: JSONObject = {
            "model": self.config.upstream_model,
            "input": [item for item in map(_input_item, request.input_items) if item],
        }
        if request.instructions:
            body["instructions"] = request.instructions
        if request.tools:
            body["tools"] = request.tools
            body["tool_choice"] = request.tool_choice
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.text_format is not None:
            body["text"] = {"format": request.text_format}
        if request.reasoning is not None:
            body["reasoning"] = request.reasoning
        return body

    def _body(self, request: GenerationRequest) -> JSONObject:
        body = self._count_body(request)
        body["stream"] = True
        body["store"] = self.config.upstream_store
        optional = {
            "max_output_tokens": request.max_output_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tool_calls": request.max_tool_calls,
            "top_logprobs": request.top_logprobs,
            "include": list(request.include) or None,
            **{key: request.extra.get(key) for key in _EXTRA_KEYS},
        }
        body.update((key, value) for key, value in optional.items() if value is not None)
        return body


def _input_item(item: JSONObject) -> JSONObject | None:
    """The item as an upstream that never saw Tether's ids can take it (None: leave out)."""
    kind = item.get("type", "message")
    if kind in _WITHOUT_IDS:
        return {key: value for key, value in item.items() if key != "id" and key != "status"}
    if kind == "reasoning":
        if not item.get("encrypted_content"):
            return None
        return {key: value for key, value in item.items() if key != "status"}
    return item
