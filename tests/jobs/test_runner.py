"""The runner against real storages with a scripted model: the event grammar it
appends, how it ends (completed, incomplete, failed), and how it yields to a
response that was ended elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tests.support.scripted import ScriptedProvider
from tests.support.stores import (
    OPENERS,
    FailingLog,
    new_response,
    read_all,
    seqs,
    types,
    wait_last_seq,
)
from tether.domain import events as ev
from tether.domain.fold import fold_all
from tether.domain.response import ResponseStatus, usage
from tether.domain.types import JSONObject
from tether.errors import ProviderError, StorageError
from tether.jobs.runner import Runner, request_from_payload
from tether.providers.base import Usage
from tether.storage.base import EventLog, Storage

STREAM_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)

MESSAGE_OPEN = [ev.OUTPUT_ITEM_ADDED, ev.CONTENT_PART_ADDED]
MESSAGE_CLOSE = [ev.OUTPUT_TEXT_DONE, ev.CONTENT_PART_DONE, ev.OUTPUT_ITEM_DONE]


@pytest.fixture(params=list(OPENERS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await OPENERS[request.param](tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


async def start(
    storage: Storage, provider: ScriptedProvider, log: EventLog | None = None, **kwargs: Any
) -> Runner:
    """Create a response (keyword arguments go to `new_response`) and its runner."""
    new = new_response(**kwargs)
    await storage.responses.create(new)
    stored = await storage.responses.get(new.id)
    assert stored is not None
    return Runner(log or storage.events, provider, stored, request_from_payload(new.job))


async def run(
    storage: Storage, provider: ScriptedProvider, **kwargs: Any
) -> tuple[str, list[ev.StoredEvent]]:
    runner = await start(storage, provider, **kwargs)
    await asyncio.wait_for(runner.run(), 10.0)
    return runner.response_id, await read_all(storage, runner.response_id)


async def assert_consistent(storage: Storage, response_id: str) -> JSONObject:
    """Gapless, exactly one terminal event, last; the fold equals the stored snapshot."""
    log = await read_all(storage, response_id)
    assert seqs(log) == list(range(len(log)))
    assert [e.terminal for e in log].count(True) == 1
    assert log[-1].terminal
    stored = await storage.responses.get(response_id)
    assert stored is not None
    assert stored.last_seq == log[-1].seq
    snapshot: JSONObject = orjson.loads(stored.snapshot)
    assert fold_all([e.payload() for e in log]) == snapshot
    assert log[-1].payload()["response"] == snapshot
    assert stored.status.value == snapshot["status"]
    return snapshot


async def assert_streams_closed(provider: ScriptedProvider) -> None:
    """The provider's streams end (or are closed) once the runner is done with them, so an
    upstream request never outlives its response."""
    async with asyncio.timeout(1.0):
        while True:
            if provider.open_streams == 0:
                return
            await asyncio.sleep(0)


def assert_wire_shapes(log: Sequence[ev.StoredEvent]) -> None:
    """Every event parses as the openai SDK's stream event of its type."""
    for event in log:
        if event.type == ev.CANCELLED:  # our documented extension; not in the SDK
            continue
        parsed = STREAM_EVENT.validate_python(event.payload())
        assert parsed.type == event.type


# --- the event grammar ------------------------------------------------------------


async def test_runner_turns_deltas_into_the_full_event_grammar(storage: Storage) -> None:
    provider = ScriptedProvider(["Hel", "lo", " world"], usage=Usage(5, 3, reasoning_tokens=1))

    response_id, log = await run(storage, provider)

    assert types(log) == [
        ev.CREATED,
        ev.IN_PROGRESS,
        *MESSAGE_OPEN,
        *[ev.OUTPUT_TEXT_DELTA] * 3,
        *MESSAGE_CLOSE,
        ev.COMPLETED,
    ]
    payloads = [e.payload() for e in log]
    item_id = payloads[2]["item"]["id"]
    assert item_id.startswith("msg_")
    assert payloads[2]["item"] == ev.message_item(item_id, "in_progress", [])
    assert payloads[3]["part"] == ev.output_text_part("")
    assert [p["delta"] for p in payloads[4:7]] == ["Hel", "lo", " world"]
    for payload in payloads[3:9]:
        assert (payload["item_id"], payload["output_index"], payload["content_index"]) == (
            item_id,
            0,
            0,
        )
    assert payloads[7]["text"] == "Hello world"
    assert payloads[8]["part"] == ev.output_text_part("Hello world")
    assert payloads[9]["item"] == ev.message_item(
        item_id, "completed", [ev.output_text_part("Hello world")]
    )
    assert payloads[1]["response"]["status"] == "in_progress"
    final = payloads[-1]["response"]
    assert final["status"] == "completed"
    assert isinstance(final["completed_at"], int)
    assert final["usage"] == usage(5, 3, 1)
    assert final["output"] == [payloads[9]["item"]]
    assert final["error"] is None and final["incomplete_details"] is None
    assert await assert_consistent(storage, response_id) == final
    assert_wire_shapes(log)
    await assert_streams_closed(provider)


async def test_runner_passes_the_request_to_the_provider(storage: Storage) -> None:
    provider = ScriptedProvider(["ok"])

    await run(storage, provider, model="scripted-x", max_output_tokens=7)

    [request] = provider.requests
    assert (request.model, request.max_output_tokens) == ("scripted-x", 7)
    assert request.input_items[0]["content"] == [{"type": "input_text", "text": "hello"}]


async def test_runner_background_response_continues_after_queued(storage: Storage) -> None:
    response_id, log = await run(storage, ScriptedProvider(["a"]), background=True)

    assert types(log)[:3] == [ev.CREATED, ev.QUEUED, ev.IN_PROGRESS]
    assert log[2].payload()["response"]["status"] == "in_progress"
    assert (await assert_consistent(storage, response_id))["status"] == "completed"


async def test_runner_without_text_completes_with_no_output(storage: Storage) -> None:
    response_id, log = await run(storage, ScriptedProvider([], usage=None))

    assert types(log) == [ev.CREATED, ev.IN_PROGRESS, ev.COMPLETED]
    snapshot = await assert_consistent(storage, response_id)
    assert snapshot["output"] == [] and snapshot["usage"] is None
    assert_wire_shapes(log)


async def test_runner_without_finish_delta_completes(storage: Storage) -> None:
    response_id, log = await run(storage, ScriptedProvider(["a"], finish=None))

    assert log[-1].type == ev.COMPLETED
    await assert_consistent(storage, response_id)


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
async def test_runner_cut_finish_ends_incomplete(
    storage: Storage, finish: str, reason: str
) -> None:
    provider = ScriptedProvider(["Hel", "lo"], finish=finish)  # type: ignore[arg-type]

    response_id, log = await run(storage, provider)

    assert types(log)[-4:] == [*MESSAGE_CLOSE, ev.INCOMPLETE]
    snapshot = await assert_consistent(storage, response_id)
    assert snapshot["status"] == "incomplete"
    assert snapshot["incomplete_details"] == {"reason": reason}
    assert snapshot["completed_at"] is None
    assert snapshot["usage"] == usage(3, 3)
    assert snapshot["output"][0]["status"] == "incomplete"
    assert snapshot["output"][0]["content"][0]["text"] == "Hello"
    stored = await storage.responses.get(response_id)
    assert stored is not None and stored.status is ResponseStatus.INCOMPLETE
    assert_wire_shapes(log)


# --- failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_type"),
    [("server_error", "server_error"), ("rate_limit_exceeded", "rate_limit_error")],
)
async def test_runner_provider_error_mid_stream_fails_keeping_partial_output(
    storage: Storage, code: str, error_type: str
) -> None:
    error = ProviderError("Upstream answered 503.", code=code, status=503)
    provider = ScriptedProvider(["Hel", "lo", " world"], fail_at=2, error=error)

    response_id, log = await run(storage, provider)

    assert types(log) == [
        ev.CREATED,
        ev.IN_PROGRESS,
        *MESSAGE_OPEN,
        ev.OUTPUT_TEXT_DELTA,
        ev.OUTPUT_TEXT_DELTA,
        ev.ERROR,
        ev.FAILED,
    ]
    assert log[-2].payload() == {
        "type": "error",
        "sequence_number": log[-2].seq,
        "code": code,
        "message": "Upstream answered 503.",
        "param": None,
        "error": {
            "type": error_type,
            "code": code,
            "message": "Upstream answered 503.",
            "param": None,
        },
    }
    snapshot = await assert_consistent(storage, response_id)
    assert snapshot["status"] == "failed"
    assert snapshot["error"] == {"code": code, "message": "Upstream answered 503."}
    [item] = snapshot["output"]
    assert item["status"] == "in_progress"
    assert item["content"][0]["text"] == "Hello"
    assert_wire_shapes(log)


async def test_runner_provider_error_before_first_delta_fails_without_output(
    storage: Storage,
) -> None:
    response_id, log = await run(storage, ScriptedProvider(["a"], fail_at=0))

    assert types(log) == [ev.CREATED, ev.IN_PROGRESS, ev.ERROR, ev.FAILED]
    snapshot = await assert_consistent(storage, response_id)
    assert snapshot["output"] == []


async def test_runner_unexpected_error_fails_with_server_error(storage: Storage) -> None:
    provider = ScriptedProvider(["a", "b"], fail_at=1, error=RuntimeError("bug in a provider"))

    response_id, log = await run(storage, provider)

    assert types(log)[-2:] == [ev.ERROR, ev.FAILED]
    error = log[-2].payload()
    assert error["code"] == "server_error"
    assert "internal error" in error["message"]
    assert "bug in a provider" not in error["message"]  # internals stay in the server log
    await assert_consistent(storage, response_id)


async def test_runner_storage_error_on_append_is_raised_to_the_worker(storage: Storage) -> None:
    """The log failed under the runner: it cannot end the response through the log, so it
    raises for the worker, which ends it through the store (see test_worker)."""
    runner = await start(
        storage, ScriptedProvider(["a", "b"]), log=FailingLog(storage.events, fail_on=1)
    )

    with pytest.raises(StorageError):
        await asyncio.wait_for(runner.run(), 10.0)


# --- ended elsewhere --------------------------------------------------------------


@pytest.mark.parametrize("then", ["continues", "fails"])
async def test_runner_cancelled_while_running_stops_without_appending(
    storage: Storage, then: str
) -> None:
    provider = ScriptedProvider(
        ["Hel", "lo", " world", "!"], hold_at=2, fail_at=2 if then == "fails" else None
    )
    runner = await start(storage, provider)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(provider.reached.wait(), 10.0)
    await wait_last_seq(storage, runner.response_id, 5)  # created … both deltas committed

    cancelled = await storage.responses.terminate(runner.response_id, ResponseStatus.CANCELLED)
    provider.release.set()
    await asyncio.wait_for(task, 10.0)

    assert cancelled is not None
    log = await read_all(storage, runner.response_id)
    assert log[-1].type == ev.CANCELLED
    assert log[-1].seq == cancelled.last_seq == 6
    snapshot = await assert_consistent(storage, runner.response_id)
    assert snapshot["output"][0]["content"][0]["text"] == "Hello"
    stored = await storage.responses.get(runner.response_id)
    assert stored is not None and stored.status is ResponseStatus.CANCELLED
    await assert_streams_closed(provider)


async def test_runner_deleted_while_running_stops_quietly(storage: Storage) -> None:
    provider = ScriptedProvider(["a", "b", "c"], hold_at=1)
    runner = await start(storage, provider)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(provider.reached.wait(), 10.0)
    await wait_last_seq(storage, runner.response_id, 4)

    assert await storage.responses.delete(runner.response_id)
    provider.release.set()
    await asyncio.wait_for(task, 10.0)

    assert await storage.responses.get(runner.response_id) is None
    await assert_streams_closed(provider)


async def test_runner_task_cancellation_propagates(storage: Storage) -> None:
    provider = ScriptedProvider(["a", "b"], hold_at=1)
    runner = await start(storage, provider)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(provider.reached.wait(), 10.0)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_streams_closed(provider)


# --- backpressure ---------------------------------------------------------------


async def test_runner_flooding_provider_still_gives_a_gapless_log(storage: Storage) -> None:
    provider = ScriptedProvider(["x"] * 5000, cooperative=False, usage=Usage(1, 5000))

    response_id, log = await run(storage, provider)

    assert len(log) == 5000 + 8
    assert types(log).count(ev.OUTPUT_TEXT_DELTA) == 5000
    assert log[-4].payload()["text"] == "x" * 5000
    snapshot = await assert_consistent(storage, response_id)
    assert snapshot["status"] == "completed"
    assert snapshot["output"][0]["content"][0]["text"] == "x" * 5000


async def test_runners_of_many_responses_in_parallel_all_finish(storage: Storage) -> None:
    runners = [
        await start(storage, ScriptedProvider([f"{i}-{j} " for j in range(30)])) for i in range(20)
    ]

    await asyncio.wait_for(asyncio.gather(*(r.run() for r in runners)), 20.0)

    for index, runner in enumerate(runners):
        snapshot = await assert_consistent(storage, runner.response_id)
        text = snapshot["output"][0]["content"][0]["text"]
        assert text == "".join(f"{index}-{j} " for j in range(30))
