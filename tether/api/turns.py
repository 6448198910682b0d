"""A create's whole context: what came before (a previous response or a
conversation) plus the new input, checked and fitted to the model's window.

- `previous_response_id`: the previous response's input items (which hold its own
  context), then its output, then the new input — OpenAI's rule. Its
  `instructions` are not carried over. It must exist and have finished.
- `conversation`: the conversation's items, then the new input; the new input
  joins the conversation at create, the output when the response completes.
- `item_reference` input items are replaced by the item of that id in the context.
- `text.format` `json_object` needs the word "json" somewhere in the messages.
- With a `context_window` configured for the model, an input that does not fit
  (with room for `max_output_tokens`) is trimmed from the oldest items when
  `truncation` is `auto`, and rejected with a 400 when it is `disabled`.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from tether.api.context import Context
from tether.api.owners import owned
from tether.api.schemas import CreateRequest, require_json_mention
from tether.domain.types import JSONObject
from tether.errors import InvalidRequestError, ProviderError, UpstreamError
from tether.providers.base import GenerationRequest
from tether.providers.tokens import count_tokens, estimate_item
from tether.storage.base import ResponseStore, conversation_not_found

PAGE = 100


@dataclass(frozen=True, slots=True)
class Turn:
    """`input_items`: the whole context the model sees (stored as the response's input
    items); `new_items`: this request's own input (what joins a conversation)."""

    input_items: list[JSONObject]
    new_items: list[JSONObject]


async def build_turn(
    ctx: Context,
    params: CreateRequest,
    *,
    project: str,
    fit: bool = True,
    previous: ResponseStore | None = None,
) -> Turn:
    """Raises `InvalidRequestError` / `NotFoundError` for a context that cannot be built,
    and for a previous response or conversation that is not `project`'s (as if unknown).
    `fit=False` leaves the context whole (for counting its tokens). `previous` is where
    `previous_response_id` is read (default: the store; a WebSocket connection reads
    its own latest `store=false` response from memory)."""
    earlier: list[JSONObject] = []
    if params.previous_response_id is not None:
        earlier = await _previous_context(
            previous or ctx.storage.responses, params.previous_response_id, project
        )
    elif params.conversation_id is not None:
        earlier = await _conversation_items(ctx, params.conversation_id, project)
    resolved = _resolve_references(earlier, params.input_items)
    items = [*earlier, *resolved]
    # What joins a conversation: this request's own items, not the ones it referenced.
    new_items = [item for item in params.input_items if item.get("type") != "item_reference"]
    if params.text_format is not None and params.text_format.get("type") == "json_object":
        require_json_mention(items, params.instructions)
    limit = ctx.settings.max_input_items
    if len(items) > limit:
        raise InvalidRequestError(
            f"This request has {len(items)} input items (with its previous response or "
            f"conversation); this server takes at most {limit} (setting max_input_items). "
            "Start a new conversation, or send fewer items.",
            param="input",
            code="too_many_input_items",
        )
    _check_tool_outputs(items, resolved)
    _check_output_ceiling(ctx, params)
    if fit:
        items = await _fit(ctx, params, items)
    return Turn(items, new_items)


TOOL_OUTPUTS = {  # output item type: the call it answers
    "function_call_output": "function_call",
    "custom_tool_call_output": "custom_tool_call",
}


def _check_tool_outputs(items: list[JSONObject], new: list[JSONObject]) -> None:
    """Every tool output this request sends answers a call in its context, as OpenAI
    requires (a 400 otherwise, before anything is generated)."""
    calls = {
        (item.get("type"), item.get("call_id"))
        for item in items
        if item.get("type") in TOOL_OUTPUTS.values()
    }
    for item in new:
        call_type = TOOL_OUTPUTS.get(item.get("type", ""))
        if call_type is not None and (call_type, item.get("call_id")) not in calls:
            kind = "function call" if call_type == "function_call" else "custom tool call"
            raise InvalidRequestError(
                f"No tool call found for {kind} output with call_id {item.get('call_id')}. "
                f"Send the {call_type} item it answers in the same input, or continue the "
                "response that made the call (previous_response_id or conversation).",
                param="input",
            )


def _check_output_ceiling(ctx: Context, params: CreateRequest) -> None:
    ceiling = ctx.providers.max_output_tokens(params.model)
    asked = params.max_output_tokens
    if ceiling is not None and asked is not None and asked > ceiling:
        raise InvalidRequestError(
            f"Invalid 'max_output_tokens': model '{params.model}' allows at most {ceiling} "
            f"output tokens on this server, but got {asked}. Ask for {ceiling} or fewer.",
            param="max_output_tokens",
            code="integer_above_max_value",
        )


async def all_input_items(store: ResponseStore, response_id: str) -> list[JSONObject]:
    items: list[JSONObject] = []
    after: str | None = None
    while True:
        page = await store.input_items(response_id, after=after, limit=PAGE, order="asc")
        items.extend(page.items)
        if not page.has_more or not page.items:
            return items
        after = page.items[-1]["id"]


def previous_response_not_found(response_id: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


async def _previous_context(
    store: ResponseStore, response_id: str, project: str
) -> list[JSONObject]:
    missing = previous_response_not_found(response_id)
    stored = owned(project, await store.get(response_id), missing)
    if not stored.status.terminal:
        raise InvalidRequestError(
            f"Previous response '{response_id}' is still {stored.status.value}; a response can "
            "continue from it once it has finished. Wait for it (poll it or stream it), or "
            "cancel it.",
            param="previous_response_id",
        )
    output: list[JSONObject] = orjson.loads(stored.snapshot)["output"]
    return [*await all_input_items(store, response_id), *output]


async def _conversation_items(ctx: Context, conversation_id: str, project: str) -> list[JSONObject]:
    conversations = ctx.storage.conversations
    missing = conversation_not_found(conversation_id, param="conversation")
    owned(project, await conversations.get(conversation_id), missing)
    items: list[JSONObject] = []
    after: str | None = None
    while True:
        page = await conversations.list_items(conversation_id, after=after, limit=PAGE, order="asc")
        items.extend(page.items)
        if not page.has_more or not page.items:
            return items
        after = page.items[-1]["id"]


def _resolve_references(earlier: list[JSONObject], items: list[JSONObject]) -> list[JSONObject]:
    """Replace `item_reference` items by the context item they name."""
    if not any(item.get("type") == "item_reference" for item in items):
        return items
    by_id = {item["id"]: item for item in earlier if "id" in item}
    resolved: list[JSONObject] = []
    for index, item in enumerate(items):
        if item.get("type") != "item_reference":
            resolved.append(item)
            by_id.setdefault(item["id"], item)
            continue
        target = by_id.get(item["id"])
        if target is None:
            raise InvalidRequestError(
                f"Item with id '{item['id']}' not found. An 'item_reference' can name only "
                "items of this request's context (its previous response or conversation, or "
                "earlier input items); send the item itself instead.",
                param=f"input[{index}]",
            )
        resolved.append(target)
    return resolved


async def _fit(ctx: Context, params: CreateRequest, items: list[JSONObject]) -> list[JSONObject]:
    window = ctx.providers.context_window(params.model)
    if window is None:
        return items
    budget = window - (params.max_output_tokens or 0)
    provider = ctx.providers.get(params.model)
    request = GenerationRequest(
        model=params.model,
        input_items=items,
        instructions=params.instructions,
        tools=params.tools,
        text_format=params.text_format,
    )
    try:
        total = await count_tokens(provider, request)
    except ProviderError as exc:
        raise provider_refusal(exc) from exc
    if total <= budget:
        return items
    if params.truncation != "auto":
        raise InvalidRequestError(
            f"Your input is about {total} tokens; model '{params.model}' has room for {budget} "
            f"(a context window of {window} tokens, less max_output_tokens). Shorten the "
            "input, or set 'truncation' to 'auto' to drop the oldest items.",
            param="input",
            code="context_length_exceeded",
        )
    # Drop the oldest items until the estimate fits; never the last one.
    kept = list(items)
    excess = total - budget
    while excess > 0 and len(kept) > 1:
        excess -= estimate_item(kept.pop(0))
    kept = _without_orphan_outputs(kept)
    if excess > 0:
        raise InvalidRequestError(
            f"The last input item alone does not fit the context window of model "
            f"'{params.model}' ({window} tokens); shorten it.",
            param="input",
            code="context_length_exceeded",
        )
    return kept


def _without_orphan_outputs(items: list[JSONObject]) -> list[JSONObject]:
    """Tool outputs whose call was trimmed away would confuse the model: drop them too."""
    calls = {item.get("call_id") for item in items if item.get("type") == "function_call"}
    return [
        item
        for item in items
        if item.get("type") != "function_call_output" or item.get("call_id") in calls
    ]


def provider_refusal(exc: ProviderError) -> InvalidRequestError | UpstreamError:
    """A provider's failure to take an input, answered before any generation: input it
    cannot take (`invalid_prompt`) is a 400; anything else an upstream failure (502)."""
    if exc.code == "invalid_prompt":
        return InvalidRequestError(exc.message, param="input", code="invalid_prompt")
    return UpstreamError(exc.message)
