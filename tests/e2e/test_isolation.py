"""Projects are isolated, keys are checked and upstream credentials stay put, against
a real `tether serve` with two projects' static keys (`api_keys`).

Every route that takes a response or conversation id is asked, with project beta's
key, for project acme's ids: each answer must be the very answer of an id that does
not exist (same status, same body but for the id), and acme's things must be as they
were afterwards.

Sections: the server · keys · isolation, route by route · upstream credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.server import UPSTREAM_KEY, TetherProcess, models_toml
from tests.support.sse import READ_TIMEOUT

ACME_KEY = "acme-e2e-key-0123456789abcdef"
BETA_KEY = "beta-e2e-key-0123456789abcdef"
MISSING_RESPONSE = "resp_0000000000000000000000000000000000000000000000000"
MISSING_CONVERSATION = "conv_0000000000000000000000000000000000000000000000000"
MISSING_ITEM = "msg_00000000000000000000000000000000000000000000000000"


# --- the server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory, mock_chat_url: str, mock_responses_url: str
) -> Iterator[TetherProcess]:
    process = TetherProcess(
        tmp_path_factory.mktemp("isolation"),
        models_toml(mock_chat_url, mock_responses_url),
        {"TETHER_API_KEYS": f"acme={ACME_KEY},beta={BETA_KEY}"},
    )
    process.start()
    yield process
    process.stop()


def call(
    server: TetherProcess, key: str | None, method: str, path: str, body: Any = None
) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.request(
        method, f"{server.base_url}{path}", json=body, headers=headers, timeout=READ_TIMEOUT
    )


def sdk(server: TetherProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


# --- keys ---------------------------------------------------------------------------


def test_a_missing_or_wrong_key_is_refused_with_401(keyed: TetherProcess) -> None:
    for key in (None, "sk-wrong-key-0123456789", "tk-0123456789abcdef-wrong-secret"):
        for method, path in [
            ("GET", "/models"),
            ("GET", "/responses/resp_x"),
            ("POST", "/responses"),
        ]:
            answer = call(keyed, key, method, path, {"model": "fake", "input": "hi"})
            assert answer.status_code == 401, (key, path)
            error = answer.json()["error"]
            assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk(keyed, "sk-wrong-key-0123456789").responses.create(model="fake", input="hi")
    assert refused.value.code == "invalid_api_key"
    assert httpx.get(f"http://127.0.0.1:{keyed.port}/healthz").status_code == 200
    assert call(keyed, ACME_KEY, "GET", "/models").status_code == 200


# --- isolation, route by route --------------------------------------------------------


def same_as_missing(
    server: TetherProcess, method: str, path: str, body: Any, ids: dict[str, str]
) -> None:
    """Beta asking for acme's `ids` gets what beta gets for ids that do not exist."""
    other = call(server, BETA_KEY, method, path.format(**ids), _filled(body, ids))
    missing_ids = {
        "response": MISSING_RESPONSE,
        "conversation": MISSING_CONVERSATION,
        "item": MISSING_ITEM,
    }
    missing = call(server, BETA_KEY, method, path.format(**missing_ids), _filled(body, missing_ids))
    assert other.status_code == missing.status_code, (method, path, other.text)
    assert other.status_code in (400, 404), (method, path, other.text)
    text = other.text
    for name, value in ids.items():
        text = text.replace(value, missing_ids[name])
    assert text == missing.text, (method, path)


def _filled(body: Any, ids: dict[str, str]) -> Any:
    if body is None:
        return None
    return {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}


PREVIOUS = {"model": "fake", "input": "more", "previous_response_id": "{response}"}
IN_CONVERSATION = {"model": "fake", "input": "more", "conversation": "{conversation}"}
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/responses/{response}", None),
    ("GET", "/responses/{response}?stream=true", None),
    ("GET", "/responses/{response}?stream=true&starting_after=1", None),
    ("GET", "/responses/{response}/input_items", None),
    ("POST", "/responses/{response}/cancel", None),
    ("DELETE", "/responses/{response}", None),
    ("POST", "/responses", PREVIOUS),
    ("POST", "/responses", {**PREVIOUS, "stream": True}),
    ("POST", "/responses", IN_CONVERSATION),
    ("POST", "/responses/input_tokens", PREVIOUS),
    ("POST", "/responses/input_tokens", IN_CONVERSATION),
    ("GET", "/conversations/{conversation}", None),
    ("POST", "/conversations/{conversation}", {"metadata": {"owner": "beta"}}),
    ("DELETE", "/conversations/{conversation}", None),
    ("GET", "/conversations/{conversation}/items", None),
    ("POST", "/conversations/{conversation}/items", {"items": [{"role": "user", "content": "b"}]}),
    ("GET", "/conversations/{conversation}/items/{item}", None),
    ("DELETE", "/conversations/{conversation}/items/{item}", None),
]


def test_another_projects_ids_answer_as_missing_on_every_route(keyed: TetherProcess) -> None:
    acme = sdk(keyed, ACME_KEY)
    done = acme.responses.create(model="fake", input="hello")
    running = acme.responses.create(model="very-slow", input="hello", background=True)
    conversation = acme.conversations.create(
        items=[{"type": "message", "role": "user", "content": "hi"}], metadata={"owner": "acme"}
    )
    item_id = acme.conversations.items.list(conversation.id).data[0].id
    assert item_id is not None
    try:
        for response in (done.id, running.id):
            ids = {"response": response, "conversation": conversation.id, "item": item_id}
            for method, path, body in ROUTES:
                same_as_missing(keyed, method, path, body, ids)
        # Acme's things are as they were: nothing was read, cancelled, deleted or added.
        assert acme.responses.retrieve(done.id).status == "completed"
        assert acme.responses.retrieve(running.id).status in ("queued", "in_progress")
        assert [i.id for i in acme.responses.input_items.list(done.id).data]
        kept = acme.conversations.retrieve(conversation.id)
        assert kept.metadata == {"owner": "acme"}
        assert [i.id for i in acme.conversations.items.list(conversation.id).data] == [item_id]
        # And acme may still build on them.
        follow = acme.responses.create(model="fake", input="more", previous_response_id=done.id)
        assert follow.status == "completed"
    finally:
        acme.responses.cancel(running.id)


def test_each_project_sees_its_own_responses(keyed: TetherProcess) -> None:
    acme, beta = sdk(keyed, ACME_KEY), sdk(keyed, BETA_KEY)
    mine, theirs = (
        acme.responses.create(model="fake", input="a"),
        beta.responses.create(model="fake", input="b"),
    )
    assert acme.responses.retrieve(mine.id).id == mine.id
    assert beta.responses.retrieve(theirs.id).id == theirs.id
    with pytest.raises(openai.NotFoundError):
        acme.responses.retrieve(theirs.id)
    with pytest.raises(openai.NotFoundError):
        beta.responses.delete(mine.id)
    acme.responses.delete(mine.id)


# --- upstream credentials ---------------------------------------------------------------


def test_upstream_credentials_appear_in_no_answer_and_no_log(keyed: TetherProcess) -> None:
    """Failing upstream calls (an error status, a rate limit, a dropped stream, a failed
    Responses upstream): neither a body, an event, an error nor the log holds the key
    Tether sends upstream."""
    bodies: list[str] = []
    for model in ("chat-500", "chat-429", "chat-drop", "resp-failed", "resp-429", "resp-drop"):
        created = call(keyed, ACME_KEY, "POST", "/responses", {"model": model, "input": "hi"})
        bodies.append(created.text)
        streamed = call(
            keyed, ACME_KEY, "POST", "/responses", {"model": model, "input": "hi", "stream": True}
        )
        bodies.append(streamed.text)
        for answer in (created, streamed):
            if answer.status_code == 200 and answer.headers["content-type"].startswith(
                "application/json"
            ):
                response_id = answer.json()["id"]
                for path in (f"/responses/{response_id}", f"/responses/{response_id}?stream=true"):
                    bodies.append(call(keyed, ACME_KEY, "GET", path).text)
        counted = call(
            keyed, ACME_KEY, "POST", "/responses/input_tokens", {"model": model, "input": "hi"}
        )
        bodies.append(counted.text)
    assert any("failed" in body for body in bodies)  # the upstreams did fail
    assert len(bodies) >= 18
    for body in bodies:
        assert UPSTREAM_KEY not in body
    assert UPSTREAM_KEY not in keyed.log_path.read_text()
