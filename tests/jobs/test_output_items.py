"""The runner turns every kind of provider delta into well-formed output items.

Each script of deltas runs through a real `Runner` on the memory and SQLite stores;
the log must follow the event grammar, parse as the openai SDK's events, validate
against the Open Responses schema, and fold into the stored snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.support.grammar import check_stream
from tests.support.openresponses import validate_event
from tests.support.stores import OPENERS, new_response, read_all
from tether.domain.fold import fold_all
from tether.domain.types import JSONObject
from tether.jobs.runner import Runner, payload_from_request, request_from_payload
from tether.providers.base import (
    Annotation,
    Delta,
    EndItem,
    Finish,
    GenerationRequest,
    OutputItem,
    ReasoningDelta,
    RefusalDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tether.storage.base import Storage

STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


class DeltaProvider:
    """Plays a fixed list of deltas."""

    def __init__(self, deltas: Sequence[Delta]) -> None:
        self.deltas = list(deltas)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        for delta in self.deltas:
            await asyncio.sleep(0)
            yield delta

    async def aclose(self) -> None:
        return None


@pytest.fixture(params=list(OPENERS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await OPENERS[request.param](tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


async def run(
    storage: Storage,
    deltas: Sequence[Delta],
    request: GenerationRequest | None = None,
    *,
    open_responses: bool = True,
) -> tuple[JSONObject, list[JSONObject]]:
    """Run the deltas; check the log; return the final snapshot and the events.

    `open_responses=False` skips the Open Responses schema, which has no hosted tools."""
    new = new_response()
    await storage.responses.create(new)
    stored = await storage.responses.get(new.id)
    assert stored is not None
    if request is None:
        request = request_from_payload(new.job)
    runner = Runner(storage.events, DeltaProvider(deltas), stored, request)
    await asyncio.wait_for(runner.run(), 10.0)
    events = [e.payload() for e in await read_all(storage, new.id)]
    check_stream(events)
    for event in events:
        assert STREAM_EVENT.validate_python(event).type == event["type"]
        if open_responses:
            validate_event(event)
    final = await storage.responses.get(new.id)
    assert final is not None
    snapshot: JSONObject = orjson.loads(final.snapshot)
    assert fold_all(events) == snapshot
    Response.model_validate(snapshot)
    return snapshot, events


def types_of(events: list[JSONObject]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


async def test_function_calls_become_consecutive_items(storage: Storage) -> None:
    snapshot, events = await run(
        storage,
        [
            ToolCallDelta(0, '{"ci', name="get_weather"),
            ToolCallDelta(0, 'ty": "Paris"}'),
            ToolCallDelta(1, "", name="get_time", call_id="call_upstream1"),
            ToolCallDelta(1, '{"tz": "CET"}'),
            Usage(10, 7),
            Finish("stop"),
        ],
    )
    assert snapshot["status"] == "completed"
    calls = snapshot["output"]
    assert [c["type"] for c in calls] == ["function_call", "function_call"]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["arguments"] == '{"city": "Paris"}'
    assert calls[0]["id"].startswith("fc_") and calls[0]["call_id"].startswith("call_")
    assert calls[1]["call_id"] == "call_upstream1"
    assert calls[1]["arguments"] == '{"tz": "CET"}'
    assert types_of(events).count("function_call_arguments.done") == 2
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert done[0]["name"] == "get_weather"


async def test_reasoning_then_text_gives_a_reasoning_item_and_a_message(
    storage: Storage,
) -> None:
    snapshot, events = await run(
        storage,
        [
            ReasoningDelta("Think", summary_index=0),
            ReasoningDelta("ing."),
            ReasoningDelta("ing more."),
            ReasoningDelta("", encrypted_content="opaque"),
            TextDelta("Answer"),
            Usage(4, 9, reasoning_tokens=5),
            Finish("stop"),
        ],
    )
    reasoning, message = snapshot["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Think"}]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "ing.ing more."}]
    assert reasoning["encrypted_content"] == "opaque"
    assert message["content"][0]["text"] == "Answer"
    assert snapshot["usage"]["output_tokens_details"]["reasoning_tokens"] == 5
    assert "reasoning_summary_part.added" in types_of(events)


async def test_refusal_and_text_are_separate_parts_of_one_message(storage: Storage) -> None:
    snapshot, _ = await run(
        storage, [TextDelta("I "), RefusalDelta("can't "), RefusalDelta("help"), Finish("stop")]
    )
    (message,) = snapshot["output"]
    assert message["content"] == [
        {"type": "output_text", "text": "I ", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "can't help"},
    ]


async def test_annotations_and_logprobs_land_on_the_text_part(storage: Storage) -> None:
    logprob = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}
    citation = {
        "type": "url_citation",
        "start_index": 0,
        "end_index": 2,
        "title": "t",
        "url": "https://example.com",
    }
    snapshot, events = await run(
        storage,
        [TextDelta("Hi", logprobs=[logprob]), Annotation(citation), Finish("stop")],
    )
    part = snapshot["output"][0]["content"][0]
    assert part["logprobs"] == [logprob]
    assert part["annotations"] == [citation]
    assert "output_text.annotation.added" in types_of(events)


async def test_passed_on_items_and_explicit_item_ends(storage: Storage) -> None:
    search = {
        "id": "ws_1",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "q"},
    }
    snapshot, _ = await run(
        storage,
        [
            TextDelta("first"),
            EndItem(),
            OutputItem(search),
            TextDelta("second"),
            EndItem(),
            TextDelta("third"),
            Finish("stop"),
        ],
        open_responses=False,
    )
    output = snapshot["output"]
    assert [i["type"] for i in output] == ["message", "web_search_call", "message", "message"]
    assert output[1] == search
    assert [i["content"][0]["text"] for i in output if i["type"] == "message"] == [
        "first",
        "second",
        "third",
    ]


async def test_length_finish_leaves_the_open_call_incomplete(storage: Storage) -> None:
    snapshot, _ = await run(storage, [ToolCallDelta(0, '{"a": ', name="f"), Finish("length")])
    assert snapshot["status"] == "incomplete"
    assert snapshot["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize(("parallel", "max_calls", "expected"), [(False, None, 1), (True, 2, 2)])
async def test_calls_beyond_the_limit_are_ignored(
    storage: Storage, parallel: bool, max_calls: int | None, expected: int
) -> None:
    request = GenerationRequest(
        model="scripted", input_items=[], parallel_tool_calls=parallel, max_tool_calls=max_calls
    )
    deltas: list[Delta] = [ToolCallDelta(i, "{}", name=f"f{i}") for i in range(3)]
    snapshot, _ = await run(storage, [*deltas, Finish("stop")], request)
    assert [c["name"] for c in snapshot["output"]] == [f"f{i}" for i in range(expected)]


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


async def test_strict_json_schema_output_that_breaks_the_schema_fails(storage: Storage) -> None:
    request = GenerationRequest(
        model="scripted",
        input_items=[],
        text_format={"type": "json_schema", "name": "place", "schema": SCHEMA, "strict": True},
    )
    snapshot, events = await run(storage, [TextDelta('{"town": "x"}'), Finish("stop")], request)
    assert snapshot["status"] == "failed"
    assert "does not match the JSON schema 'place'" in snapshot["error"]["message"]
    assert events[-2]["type"] == "error"
    ok, _ = await run(storage, [TextDelta('{"city": "x"}'), Finish("stop")], request)
    assert ok["status"] == "completed"


async def test_strict_tool_arguments_that_break_the_schema_fail(storage: Storage) -> None:
    tool = {"type": "function", "name": "f", "parameters": SCHEMA, "strict": True}
    request = GenerationRequest(model="scripted", input_items=[], tools=[tool])
    snapshot, _ = await run(storage, [ToolCallDelta(0, "{}", name="f"), Finish("stop")], request)
    assert snapshot["status"] == "failed"
    assert "function 'f'" in snapshot["error"]["message"]


async def test_the_job_payload_round_trips_every_request_field() -> None:
    request = GenerationRequest(
        model="m",
        input_items=[{"type": "message", "role": "user", "content": []}],
        instructions="be brief",
        max_output_tokens=100,
        temperature=0.5,
        top_p=0.9,
        tools=[{"type": "function", "name": "f", "parameters": SCHEMA, "strict": True}],
        tool_choice={"type": "function", "name": "f"},
        parallel_tool_calls=False,
        max_tool_calls=3,
        text_format={"type": "json_object"},
        reasoning={"effort": "low", "summary": None},
        top_logprobs=2,
        include=("message.output_text.logprobs",),
        extra={"user": "u"},
    )
    assert request_from_payload(payload_from_request(request)) == request


async def test_each_summary_index_becomes_its_own_summary_part(storage: Storage) -> None:
    snapshot, _ = await run(
        storage,
        [
            ReasoningDelta("One.", summary_index=0),
            ReasoningDelta(" More.", summary_index=0),
            ReasoningDelta("Two.", summary_index=1),
            TextDelta("ok"),
            Finish("stop"),
        ],
    )
    assert snapshot["output"][0]["summary"] == [
        {"type": "summary_text", "text": "One. More."},
        {"type": "summary_text", "text": "Two."},
    ]


async def test_an_item_the_upstream_cut_short_ends_incomplete(storage: Storage) -> None:
    snapshot, _ = await run(storage, [TextDelta("cut"), EndItem(incomplete=True), Finish("length")])
    assert snapshot["status"] == "incomplete"
    assert snapshot["output"][0]["status"] == "incomplete"


class QueuedProvider(DeltaProvider):
    """A provider with a queue: it reports when a slot took the request."""

    reports_start = True

    def __init__(self, deltas: Sequence[Delta]) -> None:
        super().__init__(deltas)
        self.slot = asyncio.Event()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        await self.slot.wait()
        yield Started()
        async for delta in super().stream(request):
            yield delta


async def test_a_response_stays_queued_until_its_provider_starts(storage: Storage) -> None:
    new = new_response(background=True)
    await storage.responses.create(new)
    stored = await storage.responses.get(new.id)
    assert stored is not None
    provider = QueuedProvider([TextDelta("hi"), Finish("stop")])
    runner = Runner(storage.events, provider, stored, request_from_payload(new.job))
    task = asyncio.ensure_future(runner.run())
    await asyncio.sleep(0.1)

    waiting = await storage.responses.get(new.id)
    assert waiting is not None and waiting.status.value == "queued"
    provider.slot.set()
    await asyncio.wait_for(task, 5.0)

    events = [e.payload() for e in await read_all(storage, new.id)]
    check_stream(events)
    assert types_of(events)[:3] == ["created", "queued", "in_progress"]
