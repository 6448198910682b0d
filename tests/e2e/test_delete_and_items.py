"""Deleting responses and listing their input items against a real `tether serve`.

The raw SSE reader lives in `test_resume.py` (tests may only add these files for now;
it belongs in `tests/support/`).
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.support.server import TetherProcess
from tests.support.sse import READ_TIMEOUT, SSE

MESSAGES = [
    {"role": "system", "content": "m0"},
    {"role": "user", "content": "m1"},
    {"role": "assistant", "content": "m2"},
    {"role": "developer", "content": "m3"},
    {"role": "user", "content": "m4"},
]


def get(server: TetherProcess, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}{path}", params=params, timeout=READ_TIMEOUT)


def text_of(item: dict[str, Any]) -> str:
    return str(item["content"][0]["text"])


# --- delete ----------------------------------------------------------------------


def test_delete_removes_response_everywhere(server: TetherProcess, client: openai.OpenAI) -> None:
    response = client.responses.create(model="fake", input="hi")

    client.responses.delete(response.id)

    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    resumed = get(server, f"/responses/{response.id}", stream="true")
    assert resumed.status_code == 404
    assert resumed.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)


def test_delete_raw_answer_is_deleted_object(server: TetherProcess, client: openai.OpenAI) -> None:
    response = client.responses.create(model="fake", input="hi")

    answer = httpx.delete(f"{server.base_url}/responses/{response.id}", timeout=READ_TIMEOUT)
    assert answer.status_code == 200
    assert answer.json() == {"id": response.id, "object": "response", "deleted": True}
    again = httpx.delete(f"{server.base_url}/responses/{response.id}", timeout=READ_TIMEOUT)
    assert again.status_code == 404
    assert set(again.json()["error"]) == {"message", "type", "param", "code"}


def test_delete_while_running_ends_open_streams(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    reader = SSE.post(
        server, {"model": "very-slow", "input": "hi", "background": True, "stream": True}
    )
    head = reader.read_until("response.output_text.delta", times=2)
    response_id = head[0].payload["response"]["id"]
    resumer = SSE.get(server, response_id, starting_after=0)
    resumer.read(2)

    client.responses.delete(response_id)

    for stream in (reader, resumer):
        while stream.next_frame() is not None:  # ends, or fails at the stream deadline
            pass
        stream.close()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response_id)
    assert get(server, f"/responses/{response_id}", stream="true").status_code == 404


# --- input items -----------------------------------------------------------------


def test_input_items_of_string_input_is_one_user_message(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    response = client.responses.create(model="fake", input="hello there")

    page = client.responses.input_items.list(response.id)
    [item] = page.data
    assert item.id.startswith("msg_")
    assert item.type == "message"
    assert item.role == "user"
    assert [part.model_dump(exclude_none=True) for part in item.content] == [
        {"type": "input_text", "text": "hello there"}
    ]
    raw = get(server, f"/responses/{response.id}/input_items").json()
    assert raw == {
        "object": "list",
        "data": [
            {
                "id": item.id,
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": "hello there"}],
            }
        ],
        "first_id": item.id,
        "last_id": item.id,
        "has_more": False,
    }


def _pages(server: TetherProcess, response_id: str, **order: str) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    after: dict[str, str] = {}
    while not pages or pages[-1]["has_more"]:
        answer = get(server, f"/responses/{response_id}/input_items", limit="2", **order, **after)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["object"] == "list"
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
        pages.append(page)
        after = {"after": page["last_id"]}
        assert len(pages) <= 5, "pagination does not end"
    return pages


@pytest.mark.parametrize(
    ("order", "expected"),
    [({"order": "asc"}, ["m0", "m1", "m2", "m3", "m4"]), ({}, ["m4", "m3", "m2", "m1", "m0"])],
    ids=["asc", "default-desc"],
)
def test_input_items_pages_through_all_items_in_order(
    server: TetherProcess, client: openai.OpenAI, order: dict[str, str], expected: list[str]
) -> None:
    response = client.responses.create(model="fake", input=MESSAGES)  # type: ignore[arg-type]

    pages = _pages(server, response.id, **order)
    assert [len(page["data"]) for page in pages] == [2, 2, 1]
    assert [page["has_more"] for page in pages] == [True, True, False]
    items = [item for page in pages for item in page["data"]]
    assert [text_of(item) for item in items] == expected
    assert len({item["id"] for item in items}) == 5
    roles = {text_of(item): item["role"] for item in items}
    assert roles == {m["content"]: m["role"] for m in MESSAGES}


def test_input_items_sdk_auto_pagination_yields_all(client: openai.OpenAI) -> None:
    response = client.responses.create(model="fake", input=MESSAGES)  # type: ignore[arg-type]

    ascending = list(client.responses.input_items.list(response.id, limit=2, order="asc"))
    descending = list(client.responses.input_items.list(response.id, limit=2))
    assert [text_of(item.model_dump()) for item in ascending] == ["m0", "m1", "m2", "m3", "m4"]
    assert [item.id for item in descending] == [item.id for item in reversed(ascending)]


@pytest.mark.parametrize("limit", ["0", "101"])
def test_input_items_limit_out_of_range_is_400(
    server: TetherProcess, client: openai.OpenAI, limit: str
) -> None:
    response = client.responses.create(model="fake", input="hi")

    answer = get(server, f"/responses/{response.id}/input_items", limit=limit)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "limit"
    with pytest.raises(openai.BadRequestError):
        client.responses.input_items.list(response.id, limit=int(limit))


def test_input_items_of_unknown_response_is_404(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list("resp_doesnotexist")
    answer = get(server, "/responses/resp_doesnotexist/input_items")
    assert answer.status_code == 404
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
