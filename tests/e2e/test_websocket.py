"""WebSocket mode of `/v1/responses`, against real `tether serve` processes, with the
official SDK's `client.responses.connect()` (and one raw `websockets` client).

Sections: helpers · turns and frames · the connection's latest responses · errors ·
keys, limits and projects · durability · duration and zero data retention.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
import websockets
from openai.resources.responses.responses import ResponsesConnection
from openai.types.responses.responses_server_event import ResponseWsError
from websockets.sync.client import connect as raw_connect

from tests.support.server import TetherProcess, models_toml
from tests.support.sse import SSE, TERMINAL, assert_gapless, lorem, wait_terminal

WATCHDOG = 20.0  # a socket still open after this is closed: a hang fails the test
ACME_KEY = "acme-ws-key-0123456789abcdef"
BETA_KEY = "beta-ws-key-0123456789abcdef"
GAMMA_KEY = "gamma-ws-key-0123456789abcdef"  # spends its rate limit
RATE_LIMIT = 40  # requests per minute per key on the keyed server
MISSING_RESPONSE = "resp_0000000000000000000000000000000000000000000000000"
VOLATILE = ("id", "item_id", "created_at", "completed_at")

MakeServer = Callable[..., TetherProcess]
Event = dict[str, Any]


# --- helpers ------------------------------------------------------------------------


def sdk(server: TetherProcess, key: str = "test") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


@contextmanager
def connect(server: TetherProcess, key: str = "test") -> Iterator[ResponsesConnection]:
    with sdk(server, key).responses.connect() as conn:
        watchdog = threading.Timer(WATCHDOG, conn.close)
        watchdog.start()
        try:
            yield conn
        finally:
            watchdog.cancel()


def recv(conn: ResponsesConnection) -> Event:
    """The next frame, as the JSON the server sent (it must be a text frame)."""
    event: Event = json.loads(conn.recv_bytes())
    return event


def read_turn(conn: ResponsesConnection) -> list[Event]:
    """Frames up to a terminal event or an error frame."""
    events = [recv(conn)]
    while events[-1]["type"] not in TERMINAL | {"error"}:
        events.append(recv(conn))
    return events


def turn(conn: ResponsesConnection, **create: Any) -> list[Event]:
    conn.send({"type": "response.create", **create})  # type: ignore[typeddict-item]
    return read_turn(conn)


def error_of(events: list[Event]) -> Event:
    assert len(events) == 1 and events[0]["type"] == "error", events
    return events[0]


def normalized(value: Any) -> Any:
    """`value` with ids and timestamps blanked: the parts two runs of one request
    do not share."""
    if isinstance(value, dict):
        return {k: "*" if k in VOLATILE else normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory, mock_chat_url: str, mock_responses_url: str
) -> Iterator[TetherProcess]:
    process = TetherProcess(
        tmp_path_factory.mktemp("websocket"),
        models_toml(mock_chat_url, mock_responses_url),
        {
            "TETHER_API_KEYS": f"acme={ACME_KEY},beta={BETA_KEY},gamma={GAMMA_KEY}",
            "TETHER_REQUESTS_PER_MINUTE_PER_KEY": str(RATE_LIMIT),
        },
    )
    process.start()
    yield process
    process.stop()


# --- turns and frames ---------------------------------------------------------------


def test_websocket_turn_sends_the_events_of_the_sse_stream(server: TetherProcess) -> None:
    request = {"model": "fake", "input": "Hello", "metadata": {"via": "ws"}}
    with connect(server) as conn:
        events = turn(conn, **request)
    streamed = SSE.post(server, {**request, "stream": True}).read_all()

    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    assert normalized(events) == normalized([frame.payload for frame in streamed])
    assert events[-1]["response"]["output"][0]["content"][0]["text"].startswith(lorem(8))
    assert all("stream_id" not in event for event in events)


def test_websocket_runs_queued_creates_one_after_the_other(server: TetherProcess) -> None:
    with connect(server) as conn:
        for words in ("one", "two", "three"):  # sent before the first one has ended
            conn.response.create(model="echo", input=words)
        turns = [read_turn(conn) for _ in range(3)]

    for events, words in zip(turns, ("one", "two", "three"), strict=True):
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert events[-1]["type"] == "response.completed"
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == words
    assert len({events[0]["response"]["id"] for events in turns}) == 3


def test_websocket_echoes_the_stream_id_on_every_frame(server: TetherProcess) -> None:
    with connect(server) as conn:
        events = turn(conn, model="fake", input="hi", stream_id="lane-1.a_b")
        failed = turn(conn, model="fake", input="hi", stream_id="lane-1.a_b", temperature=9)
        invalid = turn(conn, model="fake", input="hi", stream_id="no spaces!")
        default = turn(conn, model="fake", input="hi")

    assert events[-1]["type"] == "response.completed"
    assert {event["stream_id"] for event in events} == {"lane-1.a_b"}
    assert error_of(failed)["stream_id"] == "lane-1.a_b"
    assert error_of(invalid)["error"]["code"] == "invalid_stream_id"
    assert "stream_id" not in invalid[0]
    assert default[-1]["type"] == "response.completed"
    assert all("stream_id" not in event for event in default)


# --- the connection's latest responses ----------------------------------------------


def test_websocket_continues_a_store_false_response_of_the_connection(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    with connect(server) as conn:
        first = turn(conn, model="echo", input="red apples", store=False)
        first_id = first[0]["response"]["id"]
        second = turn(conn, model="fake", input="and?", previous_response_id=first_id)
        second_id = second[0]["response"]["id"]
        older = turn(conn, model="fake", input="again", previous_response_id=first_id)

    assert second[-1]["type"] == "response.completed"
    assert second[-1]["response"]["previous_response_id"] == first_id
    # The stored second response's context came from the connection's memory.
    context = client.responses.input_items.list(second_id, order="asc").data
    texts = [part.text for item in context for part in item.content]  # type: ignore[union-attr]
    assert texts == ["red apples", "red apples", "and?"]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first_id)  # never stored
    error = error_of(older)
    assert error["status"] == 400
    assert error["error"]["code"] == "previous_response_not_found"
    assert error["error"]["param"] == "previous_response_id"
    assert first_id in error["error"]["message"]


def test_websocket_reconnect_keeps_stored_responses_only(server: TetherProcess) -> None:
    with connect(server) as conn:
        stored = turn(conn, model="fake", input="kept")[0]["response"]["id"]
        ephemeral = turn(conn, model="fake", input="gone", store=False)[0]["response"]["id"]

    with connect(server) as conn:
        lost = turn(conn, model="fake", input="hi", store=False, previous_response_id=ephemeral)
        fresh = turn(conn, model="fake", input="start over", store=False)
        chained = turn(conn, model="fake", input="more", previous_response_id=stored)

    assert error_of(lost)["error"]["code"] == "previous_response_not_found"
    assert fresh[-1]["type"] == "response.completed"
    assert chained[-1]["type"] == "response.completed"
    assert chained[-1]["response"]["previous_response_id"] == stored


def test_websocket_failed_continuation_evicts_only_its_own_lane(server: TetherProcess) -> None:
    with connect(server) as conn:
        parent = turn(conn, model="fake", input="hi", store=False)[0]["response"]["id"]
        # A fork on another lane fails: the source lane keeps its parent.
        fork = turn(conn, model="fake", previous_response_id=parent, stream_id="fork", top_p=7)
        kept = turn(conn, model="fake", input="go on", store=False, previous_response_id=parent)
        kept_id = kept[0]["response"]["id"]
        # A continuation on the same lane fails: its parent is evicted.
        failed = turn(conn, model="fake", previous_response_id=kept_id, max_output_tokens=-1)
        evicted = turn(conn, model="fake", input="retry", previous_response_id=kept_id)
        recovered = turn(conn, model="fake", input="from scratch", store=False)

    assert error_of(fork)["error"]["param"] == "top_p"
    assert kept[-1]["type"] == "response.completed"
    assert error_of(failed)["error"]["param"] == "max_output_tokens"
    assert error_of(evicted)["error"]["code"] == "previous_response_not_found"
    assert recovered[-1]["type"] == "response.completed"


def test_websocket_tool_output_for_no_call_fails_and_evicts_its_parent(
    server: TetherProcess,
) -> None:
    """The Open Responses compliance case: a `function_call_output` whose `call_id`
    matches nothing in the previous response is an error, and that previous response
    (store=false) cannot be continued afterwards."""
    orphan = {"type": "function_call_output", "call_id": "call_nothing", "output": "42"}
    with connect(server) as conn:
        parent = turn(conn, model="fake", input="hi", store=False)[0]["response"]["id"]
        failed = turn(conn, model="fake", input=[orphan], previous_response_id=parent)
        again = turn(conn, model="fake", input="hi again", previous_response_id=parent)

    error = error_of(failed)
    assert (error["status"], error["error"]["param"]) == (400, "input")
    assert (
        "No tool call found for function call output with call_id call_nothing"
        in (error["error"]["message"])
    )
    assert error_of(again)["error"]["code"] == "previous_response_not_found"


# --- errors -------------------------------------------------------------------------


def test_websocket_error_frames_keep_the_socket_usable(server: TetherProcess) -> None:
    with connect(server) as conn:
        invalid = turn(conn, model="fake", input="hi", temperature="hot")
        unknown_model = turn(conn, model="no-such-model", input="hi")
        background = turn(conn, model="fake", input="hi", background=True)
        conn.send_raw("{not json")
        not_json = read_turn(conn)
        conn.send({"type": "response.steer", "input": "x", "previous_response_id": "resp_x"})
        typed = conn.recv()
        ok = turn(conn, model="fake", input="still here", stream=False)

    error = error_of(invalid)
    assert error == {
        "type": "error",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "code": "invalid_type",
            "message": error["error"]["message"],
            "param": "temperature",
        },
    }
    assert "sequence_number" not in error
    assert error_of(unknown_model)["status"] == 404
    assert error_of(unknown_model)["error"]["code"] == "model_not_found"
    assert error_of(background)["error"]["param"] == "background"
    assert error_of(not_json)["status"] == 400
    assert isinstance(typed, ResponseWsError)
    assert (typed.status, typed.error.param) == (400, "type")
    assert ok[-1]["type"] == "response.completed"  # `stream` is implied, whatever its value


def test_websocket_raw_frames_are_text_json_of_the_stored_events(server: TetherProcess) -> None:
    url = server.base_url.replace("http://", "ws://") + "/responses"
    with raw_connect(url, additional_headers={"Authorization": "Bearer test"}) as socket:
        socket.send(json.dumps({"type": "response.create", "model": "fake", "input": "hi"}))
        frames: list[str] = []
        while not frames or json.loads(frames[-1])["type"] not in TERMINAL:
            message = socket.recv(timeout=WATCHDOG)
            assert isinstance(message, str), "events are text frames"
            frames.append(message)
    response_id = json.loads(frames[0])["response"]["id"]

    replayed = SSE.get(server, response_id).read_all()
    assert [frame.encode() for frame in frames] == [frame.data for frame in replayed]


# --- keys, limits and projects ------------------------------------------------------


def test_websocket_handshake_refuses_a_missing_or_wrong_key(keyed: TetherProcess) -> None:
    url = keyed.base_url.replace("http://", "ws://") + "/responses"
    for headers in ({}, {"Authorization": "Bearer sk-wrong-key-0123456789"}):
        with pytest.raises(websockets.InvalidStatus) as refused:
            raw_connect(url, additional_headers=headers, open_timeout=WATCHDOG)
        assert refused.value.response.status_code == 401
        error = json.loads(refused.value.response.body)["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    with pytest.raises(websockets.InvalidStatus):
        sdk(keyed, "sk-wrong-key-0123456789").responses.connect().enter()
    with connect(keyed, ACME_KEY) as conn:
        assert turn(conn, model="fake", input="hi")[-1]["type"] == "response.completed"


def test_websocket_another_projects_response_is_not_found(keyed: TetherProcess) -> None:
    acme = sdk(keyed, ACME_KEY).responses.create(model="fake", input="secret")
    with connect(keyed, BETA_KEY) as conn:
        foreign = turn(conn, model="fake", input="hi", previous_response_id=acme.id)
        missing = turn(conn, model="fake", input="hi", previous_response_id=MISSING_RESPONSE)

    def without_id(event: Event) -> str:
        return json.dumps(event).replace(acme.id, "ID").replace(MISSING_RESPONSE, "ID")

    assert error_of(foreign)["error"]["code"] == "previous_response_not_found"
    assert without_id(foreign[0]) == without_id(missing[0])
    with connect(keyed, ACME_KEY) as conn:
        own = turn(conn, model="fake", input="hi", previous_response_id=acme.id)
    assert own[-1]["type"] == "response.completed"


def test_websocket_counts_each_create_against_the_rate_limit(keyed: TetherProcess) -> None:
    with connect(keyed, GAMMA_KEY) as conn:  # the handshake is one request
        answers = []
        while len(answers) < 2 * RATE_LIMIT and (not answers or answers[-1]["status"] != 429):
            answers.append(error_of(turn(conn, model="fake")))  # no input: a 400, counted
        conn.send({"type": "response.create", "model": "fake"})
        assert recv(conn)["type"] == "error"  # the socket is still open

    limited = answers[-1]
    assert limited["status"] == 429, "the rate limit never applied"
    assert len(answers) >= RATE_LIMIT  # the handshake and RATE_LIMIT - 1 creates passed
    assert {a["error"]["param"] for a in answers[:-1]} == {"input"}
    assert limited["error"]["code"] == "rate_limit_exceeded"
    assert int(limited["error"]["headers"]["retry-after"]) >= 1


# --- durability ---------------------------------------------------------------------


def test_websocket_stored_response_outlives_its_socket_and_resumes_over_sse(
    server: TetherProcess, client: openai.OpenAI
) -> None:
    with connect(server) as conn:
        conn.response.create(model="slow", input="hi")
        seen = [recv(conn) for _ in range(6)]  # then the client goes away mid-turn
    response_id = seen[0]["response"]["id"]
    assert seen[-1]["type"] == "response.output_text.delta"

    rest = SSE.get(server, response_id, starting_after=5).read_all()
    assert_gapless(rest, first=6)
    assert rest[-1].event == "response.completed"
    final = wait_terminal(client, response_id)
    assert final.status == "completed" and final.output_text == lorem(60)
    replayed = SSE.get(server, response_id).read_all()
    assert seen == [frame.payload for frame in replayed[:6]]


# --- duration and zero data retention -----------------------------------------------


def test_websocket_connection_ends_at_its_duration_limit(make_server: MakeServer) -> None:
    server = make_server(TETHER_WEBSOCKET_MAX_SECONDS="1")
    with connect(server) as conn:
        conn.response.create(model="slow", input="hi")  # runs longer than the limit
        events = read_turn(conn)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            conn.recv_bytes()

    error = events[-1]
    assert error["type"] == "error" and error["status"] == 400
    assert error["error"]["code"] == "websocket_connection_limit_reached"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    response_id = events[0]["response"]["id"]
    assert wait_terminal(sdk(server), response_id).status == "completed"  # stored: ran on


def test_websocket_under_zero_data_retention_chains_in_memory(make_server: MakeServer) -> None:
    server = make_server(TETHER_ZERO_DATA_RETENTION="1")
    with connect(server) as conn:
        first = turn(conn, model="fake", input="hi")
        first_id = first[0]["response"]["id"]
        second = turn(conn, model="fake", input="more", previous_response_id=first_id)
        stored = turn(conn, model="fake", input="hi", store=True)

    assert first[-1]["response"]["store"] is False
    assert second[-1]["type"] == "response.completed"
    assert error_of(stored)["error"]["param"] == "store"
    with connect(server) as conn:
        lost = turn(conn, model="fake", input="hi", previous_response_id=first_id)
    assert error_of(lost)["error"]["code"] == "previous_response_not_found"
