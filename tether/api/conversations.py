"""The `/v1/conversations` routes: create, retrieve, update and delete a
conversation; add, list, retrieve and delete its items.

Conversations always live in the configured store (never in memory): they are
stored state by nature. Items are stored normalized (each with an id) and returned
as stored.
"""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tether.api.auth import principal
from tether.api.context import context, read_body
from tether.api.owners import owned_conversation
from tether.api.routing import route
from tether.api.schemas.conversations import (
    parse_add_items,
    parse_create_conversation,
    parse_include,
    parse_items_query,
    parse_update_conversation,
)
from tether.domain.ids import new_id
from tether.domain.types import JSONObject
from tether.errors import InvalidRequestError, NotFoundError
from tether.storage.base import StoredConversation, conversation_not_found


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _conversation(conversation: StoredConversation) -> JSONObject:
    return {
        "id": conversation.id,
        "object": "conversation",
        "created_at": conversation.created_at,
        "metadata": conversation.metadata,
    }


def _item_list(items: list[JSONObject], has_more: bool) -> JSONObject:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def _item_not_found(item_id: str, conversation_id: str) -> NotFoundError:
    return NotFoundError(f"Item with id '{item_id}' not found in conversation '{conversation_id}'.")


# --- conversations ----------------------------------------------------------------


async def create_conversation(request: Request) -> Response:
    if context(request).settings.zero_data_retention:
        raise InvalidRequestError(
            "This server runs in zero-data-retention mode: it writes nothing to disk and "
            "keeps no conversations. Send the whole conversation in 'input' instead."
        )
    conversations = context(request).storage.conversations
    new = parse_create_conversation(await read_body(request))
    created = await conversations.create(
        new_id("conv"), new.metadata, new.items, int(time.time()), principal(request).project
    )
    return _json(_conversation(created))


async def retrieve_conversation(request: Request) -> Response:
    found = await owned_conversation(request, request.path_params["conversation_id"])
    return _json(_conversation(found))


async def update_conversation(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    metadata = parse_update_conversation(await read_body(request))
    await owned_conversation(request, conversation_id)
    updated = await context(request).storage.conversations.update_metadata(
        conversation_id, metadata
    )
    if updated is None:
        raise conversation_not_found(conversation_id)
    return _json(_conversation(updated))


async def delete_conversation(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    await owned_conversation(request, conversation_id)
    if not await context(request).storage.conversations.delete(conversation_id):
        raise conversation_not_found(conversation_id)
    return _json({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


# --- items --------------------------------------------------------------------------


async def add_items(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    parse_include(request.query_params.multi_items())
    items = parse_add_items(await read_body(request))
    await owned_conversation(request, conversation_id)
    added = await context(request).storage.conversations.add_items(conversation_id, items)
    return _json(_item_list(added, has_more=False))


async def list_items(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    query = parse_items_query(request.query_params.multi_items())
    await owned_conversation(request, conversation_id)
    page = await context(request).storage.conversations.list_items(
        conversation_id, after=query.after, limit=query.limit, order=query.order
    )
    return _json(_item_list(page.items, page.has_more))


async def retrieve_item(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    item_id = request.path_params["item_id"]
    parse_include(request.query_params.multi_items())
    await owned_conversation(request, conversation_id)
    item = await context(request).storage.conversations.get_item(conversation_id, item_id)
    if item is None:
        raise _item_not_found(item_id, conversation_id)
    return _json(item)


async def delete_item(request: Request) -> Response:
    conversation_id = request.path_params["conversation_id"]
    item_id = request.path_params["item_id"]
    await owned_conversation(request, conversation_id)
    conversation = await context(request).storage.conversations.delete_item(
        conversation_id, item_id
    )
    if conversation is None:
        raise _item_not_found(item_id, conversation_id)
    return _json(_conversation(conversation))


routes = [
    Route("/v1/conversations", create_conversation, methods=["POST"]),
    route(
        "/v1/conversations/{conversation_id}",
        GET=retrieve_conversation,
        POST=update_conversation,
        DELETE=delete_conversation,
    ),
    route("/v1/conversations/{conversation_id}/items", GET=list_items, POST=add_items),
    route(
        "/v1/conversations/{conversation_id}/items/{item_id}",
        GET=retrieve_item,
        DELETE=delete_item,
    ),
]
