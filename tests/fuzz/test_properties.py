"""Property-based tests (hypothesis) of request validation and SSE framing.

Validation: any body or query string given to the parsers of `tether.api.schemas`
gives a value or an `APIError` with a 4xx status and an OpenAI-shaped body — never
another exception, which the server would answer as a 500. The same holds over HTTP
against a real server: a 2xx with a well-formed answer, or an OpenAI-shaped 4xx.

Framing: every delta text (newlines, `\\r`, unicode, very long) comes out of the
openai SDK's SSE decoder exactly as it went into `tether.domain.events.encode`,
however the bytes are cut into chunks and with keepalive comments between frames.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder

from tests.fuzz.conftest import MODELS
from tether.api.schemas import (
    CreateRequest,
    parse_create_request,
    parse_list_query,
    parse_retrieve_query,
)
from tether.api.schemas.conversations import (
    parse_add_items,
    parse_create_conversation,
    parse_include,
    parse_items_query,
    parse_update_conversation,
)
from tether.api.schemas.create import KNOWN_FIELDS
from tether.api.schemas.items import HOSTED_ITEMS, ITEM_TYPES
from tether.api.schemas.parts import PART_KEYS
from tether.api.sse import DONE, KEEPALIVE, frames
from tether.domain import events as ev
from tether.errors import APIError

pytestmark = pytest.mark.fuzz

# --- strategies -------------------------------------------------------------------

TEXT = st.text(max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
ITEM_KEYS = sorted(
    {"type", "role", "content", "id", "status", "call_id", "name", "arguments", "output"}
    | {"summary", "encrypted_content", "phase", "caller", "namespace"}
)


def _objects(
    keys: list[str], value: Callable[[str], st.SearchStrategy[Any]], required: tuple[str, ...] = ()
) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with `required` and some other of `keys`, values by key, and now and then
    an unknown key."""
    known = st.sampled_from(keys).flatmap(lambda key: st.tuples(st.just(key), value(key)))
    unknown = st.sampled_from([0] * 9 + [1]).flatmap(
        lambda count: st.lists(st.tuples(TEXT, JSON), min_size=count, max_size=count)
    )
    given = st.tuples(*(st.tuples(st.just(key), value(key)) for key in required))
    return st.builds(
        lambda first, more, odd: dict([*first, *more, *odd]),
        given,
        st.lists(known, max_size=4),
        unknown,
    )


def _part_value(key: str) -> st.SearchStrategy[Any]:
    if key == "type":
        return st.sampled_from([*PART_KEYS, "input_audio", "x"])
    if key in ("image_url", "file_url"):
        return st.sampled_from(["https://example.com/a.png", "data:image/png;base64,AAAA", ""])
    if key == "file_data":
        return st.sampled_from(["data:application/pdf;base64,AAAA", "AAAA", "%%"])
    return TEXT | JSON


PARTS = _objects(sorted(set().union(*PART_KEYS.values())), _part_value, required=("type",))


def _item_value(key: str) -> st.SearchStrategy[Any]:
    if key == "type":
        return st.sampled_from([*ITEM_TYPES, *sorted(HOSTED_ITEMS)[:3], "x", None])
    if key == "role":
        return st.sampled_from(["user", "assistant", "system", "developer", "x"])
    if key in ("content", "output"):
        return TEXT | st.lists(PARTS, max_size=3)
    if key == "summary":
        return st.lists(st.fixed_dictionaries({"type": st.just("summary_text"), "text": TEXT}))
    return TEXT | JSON


ITEMS = _objects(ITEM_KEYS, _item_value, required=("type",))
TOOLS = st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "web_search", "x"]), "name": TEXT},
    optional={"parameters": JSON, "strict": st.booleans(), "description": TEXT},
)


def _create_value(key: str) -> st.SearchStrategy[Any]:
    special: dict[str, st.SearchStrategy[Any]] = {
        "model": st.sampled_from([*MODELS, "hosted", "", "unknown"]),
        "input": TEXT | st.lists(ITEMS, max_size=3),
        "tools": st.lists(TOOLS, max_size=2),
        "tool_choice": st.sampled_from(["auto", "none", "required"]) | TOOLS,
        "text": st.fixed_dictionaries(
            {},
            optional={
                "format": st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "json_object", "json_schema"])},
                    optional={"name": TEXT, "schema": JSON, "strict": st.booleans()},
                ),
                "verbosity": TEXT,
            },
        ),
        "stream": st.booleans(),
        "store": st.booleans(),
        "background": st.booleans(),
    }
    return special.get(key, JSON)


CREATE_BODIES = _objects(sorted(KNOWN_FIELDS), _create_value, required=("model", "input"))
CONVERSATION_BODIES = st.fixed_dictionaries(
    {}, optional={"items": st.lists(ITEMS, max_size=3) | JSON, "metadata": JSON}
)


def _raw(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """JSON of `bodies` mostly, else JSON of anything or bytes that are not JSON."""
    encoded = bodies.map(orjson.dumps)
    return st.one_of(encoded, encoded, encoded, JSON.map(orjson.dumps), st.binary(max_size=40))


QUERY = st.lists(
    st.tuples(
        st.sampled_from(["limit", "after", "order", "include", "include[]", "stream", "x"])
        | st.sampled_from(["starting_after", "include_obfuscation"]),
        st.sampled_from(["1", "20", "100", "0", "-1", "+5", "asc", "desc", "true", "false"]) | TEXT,
    ),
    max_size=4,
)

# --- validation -------------------------------------------------------------------


def assert_openai_shaped(body: Any) -> None:
    """`{"error": {"message", "type", "param", "code"}}` with a message to act on."""
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] in ("invalid_request_error", "server_error")
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)


def outcome(parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The parser's value, or None after checking the APIError it raised."""
    try:
        return parse(*args, **kwargs)
    except APIError as exc:
        assert 400 <= exc.status_code < 500, exc
        assert_openai_shaped(orjson.loads(orjson.dumps(exc.to_dict())))
        return None


@settings(max_examples=300, deadline=None)
@given(body=_raw(CREATE_BODIES), hosted=st.booleans())
@example(body=b'{"model": "fake", "input": "hi"}', hosted=False)
def test_create_body_gives_a_request_or_a_4xx(body: bytes, hosted: bool) -> None:
    models = [*MODELS, "hosted"]
    parsed = outcome(
        parse_create_request, body, known_models=models, hosted_tools=["hosted"] if hosted else []
    )
    if parsed is not None:
        assert isinstance(parsed, CreateRequest)
        assert parsed.model in models
        assert all(isinstance(item.get("id"), str) for item in parsed.input_items)


@settings(max_examples=200, deadline=None)
@given(body=_raw(CONVERSATION_BODIES))
def test_conversation_bodies_give_a_value_or_a_4xx(body: bytes) -> None:
    created = outcome(parse_create_conversation, body)
    if created is not None:
        assert all(isinstance(item["id"], str) for item in created.items)
    outcome(parse_update_conversation, body)
    added = outcome(parse_add_items, body)
    if added is not None:
        assert 1 <= len(added) <= 20


@settings(max_examples=200, deadline=None)
@given(params=QUERY)
def test_query_strings_give_a_value_or_a_4xx(params: list[tuple[str, str]]) -> None:
    for parse in (
        parse_list_query,
        parse_retrieve_query,
        parse_items_query,
        parse_include,
    ):
        outcome(parse, params)


@pytest.mark.parametrize(
    ("parse", "name"),
    [
        (parse_list_query, "limit"),
        (parse_items_query, "limit"),
        (parse_retrieve_query, "starting_after"),
    ],
)
def test_huge_integer_in_query_is_a_400(parse: Callable[..., Any], name: str) -> None:
    outcome(parse, [(name, "1" * 5000)])


# --- SSE framing ------------------------------------------------------------------

DELTA = st.text(st.characters(exclude_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["\n", "\r", "\r\n", "\n\n", "data: x\n\n", "\u2028\u2029\x85", "é😀\x00", ": keepalive"]
)
LONG = "".join(["line\r\n", "é😀\u2028", "\n\n", "x" * 100]) * 10_000


def _decode(chunks: Iterator[bytes]) -> list[tuple[str | None, str]]:
    return [(sse.event, sse.data) for sse in SSEDecoder().iter_bytes(chunks)]


@settings(max_examples=300, deadline=None)
@given(deltas=st.lists(DELTA, min_size=1, max_size=5), cuts=st.lists(st.integers(0, 10**6)))
@example(deltas=[LONG], cuts=[3, 70_000, 500_000])
def test_sse_frames_round_trip_any_delta_text(deltas: list[str], cuts: list[int]) -> None:
    events = [
        ev.encode(ev.text_delta("msg_1", 0, 0, delta, seq)) for seq, delta in enumerate(deltas)
    ]
    wire = KEEPALIVE.join(frames([event]) for event in events) + DONE
    edges = [0, *sorted(cut % (len(wire) + 1) for cut in cuts), len(wire)]
    chunks = (wire[start:end] for start, end in itertools.pairwise(edges))
    decoded = _decode(chunks)
    assert decoded[-1] == (None, "[DONE]")
    assert [event for event, _ in decoded[:-1]] == [ev.OUTPUT_TEXT_DELTA] * len(deltas)
    payloads = [orjson.loads(data) for _, data in decoded[:-1]]
    assert [payload["delta"] for payload in payloads] == deltas
    assert [payload["sequence_number"] for payload in payloads] == list(range(len(deltas)))
    assert [event.payload()["delta"] for event in events] == deltas


# --- over HTTP --------------------------------------------------------------------


@pytest.fixture(scope="module")
def conversation_id(fuzz_origin: str) -> str:
    answer = httpx.post(f"{fuzz_origin}/v1/conversations", json={}, timeout=30)
    conversation: str = answer.json()["id"]
    return conversation


def _check_answer(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/json"
        assert_openai_shaped(answer.json())
    elif answer.headers["content-type"].startswith("text/event-stream"):
        decoded = _decode(iter([answer.content]))
        assert decoded[-1] == (None, "[DONE]")
        for event, data in decoded[:-1]:
            assert orjson.loads(data)["type"] == event
    else:
        assert isinstance(answer.json(), dict)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.sampled_from(["responses", "input_tokens", "conversations", "conversation", "items"]),
    body=st.data(),
)
def test_any_body_gets_an_answer_or_an_openai_shaped_4xx(
    fuzz_origin: str, conversation_id: str, target: str, body: st.DataObject
) -> None:
    path, bodies = {
        "responses": ("/v1/responses", CREATE_BODIES),
        "input_tokens": ("/v1/responses/input_tokens", CREATE_BODIES),
        "conversations": ("/v1/conversations", CONVERSATION_BODIES),
        "conversation": (f"/v1/conversations/{conversation_id}", CONVERSATION_BODIES),
        "items": (f"/v1/conversations/{conversation_id}/items", CONVERSATION_BODIES),
    }[target]
    content = body.draw(_raw(bodies))
    headers = {"content-type": "application/json"}
    answer = httpx.post(fuzz_origin + path, content=content, headers=headers, timeout=30)
    _check_answer(answer)
