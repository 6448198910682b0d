"""`Idempotency-Key` on `POST /v1/responses`, end to end against a real `tether serve`:
a retry after a lost connection answers with the response the first attempt created
(the whole stream again, byte for byte, for `stream=true`), the same key with another
body is a 409 the SDK does not retry, and a key is free again after its window.

Each test counts the rows of the server's SQLite file, so "one response, not two" is
checked in the store itself.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.support.server import TetherProcess
from tests.support.sse import lorem, wait_terminal

MakeServer = Callable[..., TetherProcess]

MODELS = """
[[models]]
name = "fake"
provider = "fake"

[[models]]
name = "slow"
provider = "fake"
output_tokens = 40
tokens_per_second = 20
"""
SLOW_TEXT = lorem(40)
KEEPALIVE = b": keepalive\n\n"


@pytest.fixture(scope="module")
def tether(tmp_path_factory: pytest.TempPathFactory) -> Any:
    process = TetherProcess(tmp_path_factory.mktemp("idempotency"), MODELS)
    process.start()
    yield process
    process.stop()


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


def post(
    server: TetherProcess, body: dict[str, Any] | bytes, key: str | None, timeout: float = 10.0
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    return httpx.post(
        f"{server.base_url}/responses", content=content, headers=headers, timeout=timeout
    )


def stored_responses(server: TetherProcess) -> int:
    """How many responses the server's SQLite file holds."""
    conn = sqlite3.connect(f"file:{server.workdir / 'tether.db'}?mode=ro", uri=True)
    try:
        count: int = conn.execute("SELECT count(*) FROM responses").fetchone()[0]
        return count
    finally:
        conn.close()


def stream_body(server: TetherProcess, body: dict[str, Any], key: str) -> tuple[bytes, str]:
    """The whole SSE body of a streamed create (keepalive comments left out), and the
    value of its `idempotent-replayed` header ('' without one)."""
    headers = {"idempotency-key": key}
    with httpx.stream(
        "POST", f"{server.base_url}/responses", json=body, headers=headers, timeout=10.0
    ) as response:
        assert response.status_code == 200, response.read()
        data = b"".join(response.iter_bytes())
        return data.replace(KEEPALIVE, b""), response.headers.get("idempotent-replayed", "")


# --- a retry answers with the first attempt's response ------------------------------


def test_retry_after_a_dropped_connection_returns_the_same_response(
    tether: TetherProcess,
) -> None:
    key, body = new_key(), {"model": "slow", "input": "hi"}
    before = stored_responses(tether)
    with pytest.raises(httpx.ReadTimeout):  # the client gives up; the generation goes on
        post(tether, body, key, timeout=0.3)

    retry = post(tether, body, key)

    assert retry.status_code == 200, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    response = retry.json()
    assert response["status"] == "completed"
    assert response["output"][0]["content"][0]["text"] == SLOW_TEXT
    again = post(tether, body, key)
    assert again.json()["id"] == response["id"]
    assert stored_responses(tether) == before + 1


def test_sdk_retries_a_timed_out_create_into_the_one_response(tether: TetherProcess) -> None:
    # The SDK retries a timed-out POST with the same headers, so the same key.
    client = openai.OpenAI(base_url=tether.base_url, api_key="test", timeout=0.5, max_retries=6)
    before = stored_responses(tether)

    raw = client.responses.with_raw_response.create(
        model="slow", input="hi", extra_headers={"Idempotency-Key": new_key()}
    )

    assert int(raw.http_request.headers["x-stainless-retry-count"]) >= 1
    assert raw.headers["idempotent-replayed"] == "true"
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == SLOW_TEXT
    assert stored_responses(tether) == before + 1


def test_stream_retry_replays_the_stream_from_the_start_byte_for_byte(
    tether: TetherProcess,
) -> None:
    key, body = new_key(), {"model": "slow", "input": "hi", "stream": True}
    before = stored_responses(tether)
    with httpx.stream(
        "POST",
        f"{tether.base_url}/responses",
        json=body,
        headers={"idempotency-key": key},
        timeout=10.0,
    ) as first:
        head = next(first.iter_bytes())  # the connection drops after the first events
    assert head.startswith(b"event: response.created\n")

    replay, replayed = stream_body(tether, body, key)

    assert replayed == "true"
    assert replay.startswith(head)
    assert replay.endswith(b"data: [DONE]\n\n")
    assert b"event: response.completed\n" in replay
    created = json.loads(replay.split(b"\n", 2)[1].removeprefix(b"data: "))
    response_id = created["response"]["id"]
    with httpx.stream(
        "GET", f"{tether.base_url}/responses/{response_id}?stream=true", timeout=10.0
    ) as resume:
        full = b"".join(resume.iter_bytes()).replace(KEEPALIVE, b"")
    assert replay == full  # the retry is the log from sequence 0, as any resume reads it
    assert stream_body(tether, body, key)[0] == replay
    assert stored_responses(tether) == before + 1


def test_background_retry_answers_the_response_as_it_is_now(tether: TetherProcess) -> None:
    client = openai.OpenAI(base_url=tether.base_url, api_key="test", max_retries=0)
    key, body = new_key(), {"model": "slow", "input": "hi", "background": True}
    first = post(tether, body, key).json()
    assert first["status"] == "queued"
    wait_terminal(client, first["id"])

    retry = post(tether, body, key)

    assert retry.headers["idempotent-replayed"] == "true"
    assert (retry.json()["id"], retry.json()["status"]) == (first["id"], "completed")


def test_the_same_json_in_another_key_order_and_spacing_is_the_same_request(
    tether: TetherProcess,
) -> None:
    key = new_key()
    first = post(tether, b'{"model": "fake", "input": "hi", "metadata": {"a": "1", "b": "2"}}', key)
    retry = post(tether, b'{"metadata":{"b":"2","a":"1"},"input":"hi","model":"fake"}', key)

    assert retry.status_code == 200, retry.text
    assert retry.json()["id"] == first.json()["id"]


def test_requests_without_a_key_are_not_deduplicated(tether: TetherProcess) -> None:
    body = {"model": "fake", "input": "hi"}

    first, second = post(tether, body, None), post(tether, body, None)

    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers


# --- refusals ----------------------------------------------------------------------


def test_the_same_key_with_another_body_is_a_409_the_sdk_does_not_retry(
    tether: TetherProcess,
) -> None:
    key = new_key()
    assert post(tether, {"model": "fake", "input": "hi"}, key).status_code == 200
    before = stored_responses(tether)

    reused = post(tether, {"model": "fake", "input": "hello"}, key)

    assert reused.status_code == 409
    assert reused.headers["x-should-retry"] == "false"
    error = reused.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "idempotency_key_reused")
    assert "different request body" in error["message"]
    client = openai.OpenAI(base_url=tether.base_url, api_key="test", max_retries=2)
    with pytest.raises(openai.ConflictError) as caught:
        client.responses.create(model="fake", input="hello", extra_headers={"Idempotency-Key": key})
    assert caught.value.response.request.headers.get("x-stainless-retry-count") == "0"
    assert stored_responses(tether) == before


@pytest.mark.parametrize(("key", "words"), [("", "empty"), ("k" * 256, "at most 255")])
def test_a_bad_key_is_a_400_saying_what_to_send(
    tether: TetherProcess, key: str, words: str
) -> None:
    answer = post(tether, {"model": "fake", "input": "hi"}, key)

    assert answer.status_code == 400
    assert words in answer.json()["error"]["message"]


def test_a_key_of_255_characters_is_taken(tether: TetherProcess) -> None:
    key = "k" * 254 + str(uuid.uuid4())[:1]
    first = post(tether, {"model": "fake", "input": "hi"}, key)
    retry = post(tether, {"model": "fake", "input": "hi"}, key)

    assert first.status_code == 200, first.text
    assert retry.json()["id"] == first.json()["id"]


def test_a_key_with_store_false_is_a_400(tether: TetherProcess) -> None:
    answer = post(tether, {"model": "fake", "input": "hi", "store": False}, new_key())

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "store"
    assert "Idempotency-Key" in error["message"]


def test_a_retry_after_the_response_was_deleted_is_a_404_saying_so(
    tether: TetherProcess,
) -> None:
    key, body = new_key(), {"model": "fake", "input": "hi"}
    response_id = post(tether, body, key).json()["id"]
    assert httpx.delete(f"{tether.base_url}/responses/{response_id}").status_code == 200

    retry = post(tether, body, key)

    assert retry.status_code == 404
    assert "deleted" in retry.json()["error"]["message"]


# --- the window -----------------------------------------------------------------------


def test_after_its_window_a_key_creates_a_new_response(make_server: MakeServer) -> None:
    server = make_server(MODELS, TETHER_IDEMPOTENCY_SECONDS="1")
    key, body = new_key(), {"model": "fake", "input": "hi"}
    first = post(server, body, key).json()["id"]
    assert post(server, body, key).json()["id"] == first

    time.sleep(1.2)
    later = post(server, body, key)

    assert later.status_code == 200
    assert "idempotent-replayed" not in later.headers
    assert later.json()["id"] != first
    assert post(server, body, key).json()["id"] == later.json()["id"]
    assert stored_responses(server) == 2
