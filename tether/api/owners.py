"""Who may see what: a response (its events and input items) and a conversation (its
items) are visible to the project that created them only.

Every route that takes a response or conversation id reads it through
`owned_response` / `owned_conversation` (and a create's `previous_response_id` or
`conversation` through `owned`), so the one check cannot be forgotten: another
project's id answers exactly what an unknown id answers — same status, same message.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from starlette.requests import Request

from tether.api.auth import principal
from tether.api.context import context
from tether.errors import APIError, response_not_found
from tether.storage.base import StoredConversation, StoredResponse, conversation_not_found


class _Owned(Protocol):
    @property
    def project(self) -> str: ...


Owned = TypeVar("Owned", bound=_Owned)


def owned(project: str, stored: Owned | None, missing: APIError) -> Owned:
    """`stored` if `project` owns it; else raise `missing`, the error of an unknown id."""
    if stored is None or stored.project != project:
        raise missing
    return stored


async def owned_response(request: Request, response_id: str) -> StoredResponse:
    """The stored response `response_id` of the request's project, or a 404."""
    stored = await context(request).storage.responses.get(response_id)
    return owned(principal(request).project, stored, response_not_found(response_id))


async def owned_conversation(
    request: Request, conversation_id: str, param: str | None = None
) -> StoredConversation:
    """Conversation `conversation_id` of the request's project, or a 404."""
    stored = await context(request).storage.conversations.get(conversation_id)
    missing = conversation_not_found(conversation_id, param=param)
    return owned(principal(request).project, stored, missing)
