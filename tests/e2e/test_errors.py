"""Errors are OpenAI-shaped JSON with a 4xx status, answered before any stream starts.

Raw `httpx` requests show the status, content type and body as sent; the official
SDK shows that its exception classes come out right. Every create error is tried
with and without `"stream": true`: a stream must never start for a bad request.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.support.server import TetherProcess

TIMEOUT = httpx.Timeout(10.0)
UNKNOWN_ID = "resp_0123456789abcdef0123456789abcdef0123456789abcdef01"
ERROR_KEYS = {"message", "type", "param", "code"}


def request(server: TetherProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.base_url}{path}", timeout=TIMEOUT, **kwargs)


def post_create(server: TetherProcess, body: bytes) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return request(server, "POST", "/responses", content=body, headers=headers)


def assert_error(
    response: httpx.Response,
    status: int,
    *,
    phrase: str,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The answer is `status` with a JSON body `{"error": {message, type, param, code}}`."""
    assert response.status_code == status, response.text
    content_type = response.headers["content-type"]
    assert content_type.split(";")[0].strip() == "application/json", content_type
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    assert isinstance(error["message"], str)
    assert phrase in error["message"], error["message"]
    return error


def valid_body(**fields: Any) -> dict[str, Any]:
    return {"model": "fake", "input": "hello", **fields}


def without(name: str, **fields: Any) -> dict[str, Any]:
    body = valid_body(**fields)
    del body[name]
    return body


# (body fields, status, code, param, key phrase of the message)
CREATE_ERRORS: dict[str, tuple[dict[str, Any], int, str | None, str | None, str]] = {
    "temperature-not-a-number": (
        valid_body(temperature="hot"),
        400,
        "invalid_type",
        "temperature",
        "expected a number",
    ),
    "stream-not-a-boolean": (
        valid_body(stream="yes"),
        400,
        "invalid_type",
        "stream",
        "expected a boolean",
    ),
    "input-not-text-or-items": (
        valid_body(input=5),
        400,
        "invalid_type",
        "input",
        "expected a string or an array",
    ),
    "background-without-store": (
        valid_body(background=True, store=False),
        400,
        None,
        "store",
        "Set 'store' to true",
    ),
    "unknown-model": (
        valid_body(model="no-such-model"),
        404,
        "model_not_found",
        None,
        "`no-such-model` does not exist",
    ),
    "max-output-tokens-below-16": (
        valid_body(max_output_tokens=8),
        400,
        "integer_below_min_value",
        "max_output_tokens",
        "Expected a value >= 16, but got 8",
    ),
    "unknown-field": (
        valid_body(colour="blue"),
        400,
        "unknown_parameter",
        "colour",
        "Unknown parameter: 'colour'",
    ),
    "missing-model": (
        without("model"),
        400,
        "missing_required_parameter",
        "model",
        "Send the id of a model",
    ),
    "missing-input": (
        without("input"),
        400,
        "missing_required_parameter",
        "input",
        "Send a string or a list of messages",
    ),
}


# Each case as plain JSON and with `"stream": true` (unless the case is `stream` itself).
CREATE_CASES = [
    pytest.param(case, stream, id=f"{case}-{'stream' if stream else 'json'}")
    for case, (fields, *_) in CREATE_ERRORS.items()
    for stream in (False, True)
    if not ("stream" in fields and not stream)
]


@pytest.mark.parametrize(("case", "stream"), CREATE_CASES)
def test_create_rejects_bad_field_before_any_stream(
    server: TetherProcess, case: str, stream: bool
) -> None:
    fields, status, code, param, phrase = CREATE_ERRORS[case]
    body = {"stream": stream, **fields}
    response = post_create(server, orjson.dumps(body))
    assert_error(response, status, code=code, param=param, phrase=phrase)


@pytest.mark.parametrize("stream_field", [b"", b', "stream": true'], ids=["json", "stream"])
def test_create_rejects_malformed_json(server: TetherProcess, stream_field: bytes) -> None:
    body = b'{"model": "fake", "input": "hello"' + stream_field + b",,}"
    response = post_create(server, body)
    error = assert_error(response, 400, phrase="not valid JSON")
    assert "Send a JSON object" in error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_create_rejects_body_that_is_an_array(server: TetherProcess, stream: bool) -> None:
    response = post_create(server, orjson.dumps([valid_body(stream=stream)]))
    error = assert_error(response, 400, phrase="not an object")
    assert "Send a JSON object" in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/responses/{UNKNOWN_ID}"),
        ("GET", f"/responses/{UNKNOWN_ID}?stream=true"),
        ("GET", f"/responses/{UNKNOWN_ID}?stream=true&starting_after=3"),
        ("POST", f"/responses/{UNKNOWN_ID}/cancel"),
        ("DELETE", f"/responses/{UNKNOWN_ID}"),
        ("GET", f"/responses/{UNKNOWN_ID}/input_items"),
    ],
)
def test_unknown_response_id_is_404(server: TetherProcess, method: str, path: str) -> None:
    response = request(server, method, path)
    assert_error(response, 404, phrase=f"Response with id '{UNKNOWN_ID}' not found")


@pytest.mark.parametrize(
    ("starting_after", "code", "phrase"),
    [
        ("-1", "integer_below_min_value", "Send the sequence_number of the last event"),
        ("x", "invalid_type", "Send the sequence_number of the last event"),
    ],
)
def test_stream_resume_rejects_bad_starting_after(
    server: TetherProcess, client: openai.OpenAI, starting_after: str, code: str, phrase: str
) -> None:
    created = client.with_options(timeout=15.0).responses.create(model="fake", input="hello")
    path = f"/responses/{created.id}?stream=true&starting_after={starting_after}"
    response = request(server, "GET", path)
    assert_error(response, 400, code=code, param="starting_after", phrase=phrase)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("?stream=true&starting_after=-99999999999999999999999", "starting_after"),
        ("/input_items?limit=99999999999999999999999", "limit"),
    ],
    ids=["starting_after", "limit"],
)
def test_query_rejects_huge_integer_as_bad_request(
    server: TetherProcess, client: openai.OpenAI, query: str, param: str
) -> None:
    created = client.with_options(timeout=15.0).responses.create(model="fake", input="hello")
    response = request(server, "GET", f"/responses/{created.id}{query}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_path_is_404_json(server: TetherProcess) -> None:
    response = request(server, "GET", "/no-such-endpoint")
    assert_error(response, 404, phrase="Unknown path /v1/no-such-endpoint")


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/responses"), ("GET", "/responses"), ("PATCH", f"/responses/{UNKNOWN_ID}")],
)
def test_wrong_method_is_405_json(server: TetherProcess, method: str, path: str) -> None:
    response = request(server, method, path)
    assert_error(response, 405, phrase=f"Method {method} is not allowed")


def test_wrong_method_names_allowed_methods(server: TetherProcess) -> None:
    response = request(server, "PUT", "/responses")
    assert response.status_code == 405
    assert "POST" in response.headers.get("allow", "")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_sdk_unknown_model_raises_not_found(client: openai.OpenAI, stream: bool) -> None:
    sdk = client.with_options(timeout=15.0)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.create(model="no-such-model", input="hello", stream=stream)
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert "does not exist" in caught.value.message


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_sdk_bad_field_raises_bad_request(client: openai.OpenAI, stream: bool) -> None:
    sdk = client.with_options(timeout=15.0)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="fake", input="hello", max_output_tokens=8, stream=stream)
    assert caught.value.code == "integer_below_min_value"
    assert caught.value.param == "max_output_tokens"


def test_sdk_background_without_store_raises_bad_request(client: openai.OpenAI) -> None:
    sdk = client.with_options(timeout=15.0)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="fake", input="hello", background=True, store=False)
    assert caught.value.param == "store"


def test_sdk_unknown_response_raises_not_found(client: openai.OpenAI) -> None:
    sdk = client.with_options(timeout=15.0)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(UNKNOWN_ID)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.cancel(UNKNOWN_ID)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(UNKNOWN_ID)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.input_items.list(UNKNOWN_ID)
