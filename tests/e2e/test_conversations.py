"""The Conversations API against a real `tether serve`, through the `openai` SDK
(`client.conversations`, `client.conversations.items`) and raw HTTP where the SDK
hides the wire.

Sections: helpers · conversations · items · errors · persistence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai.types.conversations import Conversation, Message

from tests.support.server import TetherProcess
from tests.support.sse import READ_TIMEOUT

MESSAGES: list[Any] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "m1"},
    {"role": "assistant", "content": "m2"},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "m3"}]},
]

# --- helpers --------------------------------------------------------------------


def raw(server: TetherProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.base_url}{path}", timeout=READ_TIMEOUT, **kwargs)


def text_of(item: Any) -> str:
    return str(item.content[0].text)


def id_of(item: Any) -> str:
    """The id of a conversation item (the SDK types some items' ids as optional)."""
    assert item.id
    return str(item.id)


def error_of(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    return error


# --- conversations ----------------------------------------------------------------


def test_conversation_create_with_items_and_metadata(client: openai.OpenAI) -> None:
    made = client.conversations.create(items=MESSAGES, metadata={"topic": "demo"})

    assert made.id.startswith("conv_") and made.object == "conversation"
    assert made.metadata == {"topic": "demo"} and made.created_at > 0
    assert client.conversations.retrieve(made.id) == made
    items = list(client.conversations.items.list(made.id, order="asc"))
    assert [text_of(i) for i in items] == ["be brief", "m1", "m2", "m3"]
    messages = [item for item in items if isinstance(item, Message)]
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert all(m.id.startswith("msg_") and m.status == "completed" for m in messages)
    assert messages[2].content[0].type == "output_text"


def test_conversation_create_with_nothing_is_empty(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    made = client.conversations.create()

    assert made.metadata == {}
    page = raw(server, "GET", f"/conversations/{made.id}/items").json()
    assert page == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    answer = raw(server, "POST", "/conversations", content=b"")  # no body at all
    assert answer.status_code == 200
    Conversation.model_validate(answer.json())


def test_conversation_update_replaces_metadata(client: openai.OpenAI) -> None:
    made = client.conversations.create(metadata={"a": "1", "b": "2"})

    updated = client.conversations.update(made.id, metadata={"c": "3"})

    assert (updated.id, updated.created_at, updated.metadata) == (
        made.id,
        made.created_at,
        {"c": "3"},
    )
    assert client.conversations.retrieve(made.id).metadata == {"c": "3"}
    assert client.conversations.update(made.id, metadata=None).metadata == {}


def test_conversation_delete_answers_deleted_and_then_404s(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    made = client.conversations.create(items=MESSAGES[:1])

    deleted = client.conversations.delete(made.id)

    assert (deleted.id, deleted.object, deleted.deleted) == (made.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(made.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.create(made.id, items=MESSAGES[:1])
    with pytest.raises(openai.NotFoundError):
        client.conversations.update(made.id, metadata={"a": "b"})
    again = raw(server, "DELETE", f"/conversations/{made.id}")
    assert error_of(again, 404)["message"] == f"Conversation with id '{made.id}' not found."


# --- items --------------------------------------------------------------------------


def test_items_create_appends_and_answers_a_list(client: openai.OpenAI) -> None:
    made = client.conversations.create(items=MESSAGES[:1])

    added = client.conversations.items.create(
        made.id, items=MESSAGES[1:3], include=["message.output_text.logprobs"]
    )

    assert added.object == "list" and not added.has_more
    assert [text_of(i) for i in added.data] == ["m1", "m2"]
    assert (added.first_id, added.last_id) == (added.data[0].id, added.data[-1].id)
    listed = list(client.conversations.items.list(made.id, order="asc"))
    assert [text_of(i) for i in listed] == ["be brief", "m1", "m2"]
    assert listed[1:] == added.data


def test_items_list_defaults_to_newest_first_and_pages(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    made = client.conversations.create(
        items=[{"role": "user", "content": str(n)} for n in range(5)]
    )

    newest = client.conversations.items.list(made.id, limit=2)
    everything = list(client.conversations.items.list(made.id, limit=2, order="asc"))

    assert [text_of(i) for i in newest.data] == ["4", "3"] and newest.has_more
    assert [text_of(i) for i in everything] == ["0", "1", "2", "3", "4"]  # paged with after
    body = raw(
        server,
        "GET",
        f"/conversations/{made.id}/items",
        params={
            "after": everything[1].id,
            "limit": "2",
            "order": "asc",
            "include[]": "reasoning.encrypted_content",
        },
    ).json()
    assert [item["content"][0]["text"] for item in body["data"]] == ["2", "3"]
    assert (body["first_id"], body["last_id"], body["has_more"]) == (
        everything[2].id,
        everything[3].id,
        True,
    )


def test_items_retrieve_and_delete(server: TetherProcess, client: openai.OpenAI) -> None:
    made = client.conversations.create(items=MESSAGES[:3], metadata={"k": "v"})
    first, second, third = client.conversations.items.list(made.id, order="asc").data
    items = client.conversations.items

    assert items.retrieve(id_of(second), conversation_id=made.id) == second
    after_delete = items.delete(id_of(second), conversation_id=made.id)

    assert after_delete == made
    left = items.list(made.id, order="asc")
    assert [id_of(i) for i in left] == [id_of(first), id_of(third)]
    gone = raw(server, "GET", f"/conversations/{made.id}/items/{id_of(second)}")
    assert error_of(gone, 404)["message"] == (
        f"Item with id '{id_of(second)}' not found in conversation '{made.id}'."
    )
    with pytest.raises(openai.NotFoundError):
        items.delete(id_of(second), conversation_id=made.id)
    with pytest.raises(openai.NotFoundError):
        items.retrieve(id_of(first), conversation_id="conv_unknown")


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"items": [{"role": "user", "content": "x"}] * 21}, "items", "array_above_max_length"),
        ({"items": [{"content": "no role"}]}, "items[0].role", "missing_required_parameter"),
        ({"items": "hello"}, "items", "invalid_type"),
        ({"metadata": {str(n): "v" for n in range(17)}}, "metadata", "object_above_max_properties"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length"),
        ({"metadata": {"k": 1}}, "metadata.k", "invalid_type"),
        ({"model": "fake"}, "model", "unknown_parameter"),
        (
            {"items": [{"type": "item_reference", "id": "msg_1"}]},
            "items[0]",
            "unsupported_parameter",
        ),
    ],
)
def test_conversation_create_rejects_bad_bodies(
    server: TetherProcess, body: dict[str, Any], param: str, code: str
) -> None:
    error = error_of(raw(server, "POST", "/conversations", json=body), 400)

    assert (error["param"], error["code"]) == (param, code)
    assert f"'{param}'" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": [{"role": "robot", "content": "x"}]}, "items[0].role"),
    ],
)
def test_items_create_rejects_bad_bodies(
    server: TetherProcess, client: openai.OpenAI, body: dict[str, Any], param: str
) -> None:
    made = client.conversations.create()

    error = error_of(raw(server, "POST", f"/conversations/{made.id}/items", json=body), 400)

    assert error["param"] == param


def test_items_create_rejects_an_id_already_in_the_conversation(client: openai.OpenAI) -> None:
    made = client.conversations.create(items=MESSAGES[:1])
    [held] = client.conversations.items.list(made.id).data
    again: Any = {"type": "message", "id": id_of(held), "role": "user", "content": "again"}

    with pytest.raises(openai.BadRequestError) as caught:
        client.conversations.items.create(made.id, items=[again])

    assert caught.value.param == "items" and id_of(held) in caught.value.message


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "newest"}, "order"),
        ({"after": "msg_unknown"}, "after"),
        ({"include[]": "everything"}, "include"),
    ],
)
def test_items_list_rejects_bad_queries(
    server: TetherProcess, client: openai.OpenAI, params: dict[str, str], param: str
) -> None:
    made = client.conversations.create(items=MESSAGES[:1])

    error = error_of(raw(server, "GET", f"/conversations/{made.id}/items", params=params), 400)

    assert error["param"] == param


def test_unknown_conversation_is_404_everywhere(server: TetherProcess) -> None:
    requests: list[tuple[str, str, Any]] = [
        ("GET", "/conversations/conv_nope", None),
        ("POST", "/conversations/conv_nope", {"metadata": {}}),
        ("DELETE", "/conversations/conv_nope", None),
        ("GET", "/conversations/conv_nope/items", None),
        ("POST", "/conversations/conv_nope/items", {"items": MESSAGES[:1]}),
        ("GET", "/conversations/conv_nope/items/msg_1", None),
        ("DELETE", "/conversations/conv_nope/items/msg_1", None),
    ]
    for method, path, body in requests:
        error = error_of(raw(server, method, path, json=body), 404)
        assert error["message"] == "Conversation with id 'conv_nope' not found.", (method, path)


# --- persistence and responses ------------------------------------------------------


def test_conversation_survives_a_restart(make_server: Callable[..., TetherProcess]) -> None:
    server = make_server()
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    made = client.conversations.create(items=MESSAGES, metadata={"k": "v"})
    items = client.conversations.items.list(made.id).data

    server.kill()
    server.restart()

    assert client.conversations.retrieve(made.id) == made
    assert client.conversations.items.list(made.id).data == items


def test_response_in_a_conversation_adds_its_input_and_output(client: openai.OpenAI) -> None:
    made = client.conversations.create(items=MESSAGES[:1])

    response = client.responses.create(model="fake", input="question", conversation=made.id)

    items = list(client.conversations.items.list(made.id, order="asc"))
    assert [text_of(i) for i in items[:2]] == ["be brief", "question"]
    assert [i.id for i in items[2:]] == [o.id for o in response.output]
    assert text_of(items[-1]) == response.output_text
