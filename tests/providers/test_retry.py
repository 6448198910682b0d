"""The retry policy and timeouts of the upstream providers: the pure parts (backoff,
Retry-After, attempts on a fake clock), then both providers against the fault upstream
over real sockets."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from email.utils import formatdate
from typing import Any

import pytest

from tests.support.fault_upstream import FaultUpstream, run_fault_upstream
from tests.support.server import free_port
from tether.errors import ConfigError, ProviderError
from tether.providers.base import Delta, Finish, GenerationRequest, TextDelta
from tether.providers.chat import ChatProvider
from tether.providers.responses import ResponsesProvider
from tether.providers.retry import (
    Attempts,
    RetryableError,
    RetryPolicy,
    retry_after,
    status_failure,
)

Provider = ChatProvider | ResponsesProvider
MakeProvider = Callable[..., Provider]


# --- the policy ---------------------------------------------------------------------------


def test_retry_backoff_doubles_up_to_its_cap_and_jitter_only_shortens() -> None:
    policy = RetryPolicy()

    assert [policy.backoff(n, 0.0) for n in (1, 2, 3, 4, 5, 6, 7)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0
    ]  # fmt: skip
    assert policy.backoff(2, 0.999) == pytest.approx(0.75, abs=0.001)


@pytest.mark.parametrize(
    ("status", "retried"),
    [(429, True), (500, True), (502, True), (503, True), (504, True), (400, False),
     (401, False), (404, False), (422, False), (501, False)],
)  # fmt: skip
def test_retry_status_failure_retries_only_429_and_transient_5xx(
    status: int, retried: bool
) -> None:
    error = ProviderError("x", status=status)

    assert isinstance(status_failure(error, [(b"retry-after", b"3")]), RetryableError) is retried


# --- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ([(b"retry-after", b"3")], 3.0),
        ([(b"retry-after", b"1.5")], 1.5),
        ([(b"retry-after", b"0")], 0.0),
        ([(b"retry-after-ms", b"250"), (b"retry-after", b"9")], 0.25),
        ([(b"retry-after", formatdate(1_000_060, usegmt=True).encode())], 60.0),
        ([(b"retry-after", formatdate(999_000, usegmt=True).encode())], 0.0),  # in the past
        ([(b"retry-after", b"soon")], None),
        ([(b"retry-after", b"-4")], None),
        ([(b"retry-after", b"nan")], None),
        ([(b"content-type", b"application/json")], None),
    ],
)
def test_retry_after_reads_seconds_milliseconds_and_http_dates(
    headers: list[tuple[bytes, bytes]], seconds: float | None
) -> None:
    assert retry_after(headers, now=lambda: 1_000_000.0) == seconds


# --- attempts -----------------------------------------------------------------------------


class Clock:
    """A fake clock whose `sleep` moves it on; records the waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def attempts(clock: Clock, **policy: Any) -> Attempts:
    return Attempts(RetryPolicy(**policy), clock=clock.time, sleep=clock.sleep, rand=lambda: 0.0)


async def test_attempts_wait_with_backoff_then_give_up_after_max_retries() -> None:
    clock = Clock()
    calls = attempts(clock, max_retries=2)
    failure = RetryableError("Upstream model 'm' returned HTTP 503: busy", status=503)

    await calls.failed(failure)
    await calls.failed(failure)
    with pytest.raises(ProviderError) as caught:
        await calls.failed(failure)

    assert clock.waits == [0.5, 1.0]
    assert type(caught.value) is ProviderError  # never the internal retryable kind
    assert caught.value.message == (
        "Upstream model 'm' returned HTTP 503: busy (gave up after 3 attempts; max_retries = 2)"
    )
    assert caught.value.status == 503


async def test_attempts_honour_retry_after_instead_of_backoff() -> None:
    clock = Clock()
    calls = attempts(clock)

    await calls.failed(RetryableError("x", status=429, retry_after=7.0))

    assert clock.waits == [7.0]
    assert calls.count == 2


async def test_attempts_give_up_at_once_when_retry_after_is_past_the_budget() -> None:
    clock = Clock()
    calls = attempts(clock, budget_seconds=10.0)

    with pytest.raises(ProviderError) as caught:
        await calls.failed(RetryableError("busy", code="rate_limit_exceeded", retry_after=60))

    assert clock.waits == []
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.message == (
        "busy (gave up after 1 attempt; it asked to retry after 60 seconds,"
        " past retry_budget_seconds = 10)"
    )


async def test_attempts_stop_when_the_budget_is_spent() -> None:
    clock = Clock()
    calls = attempts(clock, max_retries=10, budget_seconds=5.0)
    failure = RetryableError("down")

    with pytest.raises(ProviderError) as caught:
        for _ in range(10):
            clock.now += 1.0  # each attempt takes a second
            await calls.failed(failure)

    assert clock.waits == [0.5, 1.0]  # a 2 s wait would start after 5.5 s
    assert "gave up after 3 attempts; the next would start past retry_budget_seconds = 5" in (
        caught.value.message
    )


async def test_attempts_raise_other_failures_as_they_are_and_note_a_later_attempt() -> None:
    clock = Clock()
    first = ProviderError("bad request", status=400)
    with pytest.raises(ProviderError) as caught:
        await attempts(clock).failed(first)
    assert caught.value is first

    calls = attempts(clock)
    await calls.failed(RetryableError("busy", status=503))
    with pytest.raises(ProviderError) as later:
        await calls.failed(ProviderError("bad request", status=400))
    assert later.value.message == "bad request (on attempt 2; the earlier ones failed before it)"


async def test_attempts_with_no_retries_fail_on_the_first_retryable_failure() -> None:
    with pytest.raises(ProviderError, match=r"gave up after 1 attempt; max_retries = 0\)"):
        await attempts(Clock(), max_retries=0).failed(RetryableError("down"))


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", [ChatProvider, ResponsesProvider])
def test_retry_options_default_to_timeout_seconds_and_two_retries(
    provider: type[Provider],
) -> None:
    plain = provider.from_options("m", {"base_url": "http://x/v1", "timeout_seconds": 42})
    tuned = provider.from_options(
        "m",
        {
            "base_url": "http://x/v1",
            "first_token_timeout_seconds": 5,
            "inter_token_timeout_seconds": 0.5,
            "max_retries": 0,
            "retry_budget_seconds": 3,
        },
    )

    assert (plain.config.timeouts.first_token, plain.config.timeouts.inter_token) == (42, 42)
    assert (plain.config.retry.max_retries, plain.config.retry.budget_seconds) == (2, 30.0)
    assert (tuned.config.timeouts.first_token, tuned.config.timeouts.inter_token) == (5, 0.5)
    assert (tuned.config.retry.max_retries, tuned.config.retry.budget_seconds) == (0, 3.0)


@pytest.mark.parametrize("provider", [ChatProvider, ResponsesProvider])
@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_retries": -1}, "'max_retries' must be 0 (no retries) or more"),
        ({"max_retries": 1.5}, "'max_retries' must be an integer"),
        ({"max_retries": True}, "'max_retries' must be an integer"),
        ({"retry_budget_seconds": -1}, "'retry_budget_seconds' must be 0 or more"),
        ({"first_token_timeout_seconds": 0}, "'first_token_timeout_seconds' must be positive"),
        ({"inter_token_timeout_seconds": "5"}, "'inter_token_timeout_seconds' must be a number"),
    ],
)
def test_retry_option_errors_name_model_and_key(
    provider: type[Provider], options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        provider.from_options("my-model", {"base_url": "http://x/v1", **options})

    assert "my-model" in str(caught.value)
    assert fragment in str(caught.value)


# --- the providers over real sockets ------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstream]:
    with run_fault_upstream() as server:
        yield server


@pytest.fixture(params=["chat", "responses"])
async def make_provider(
    request: pytest.FixtureRequest, upstream: FaultUpstream
) -> AsyncIterator[MakeProvider]:
    kind: type[Provider] = ChatProvider if request.param == "chat" else ResponsesProvider
    made: list[Provider] = []

    def make(**options: Any) -> Provider:
        provider = kind.from_options("faulty", {"base_url": upstream.url, **options})
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def generation(plan: str) -> tuple[GenerationRequest, str]:
    """A request for the fault upstream's `plan`, and its call id."""
    call = uuid.uuid4().hex[:12]
    text = f"plan={plan} call={call}"
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return GenerationRequest(model="faulty", input_items=[item]), call


async def run(provider: Provider, plan: str) -> tuple[list[Delta], ProviderError | None, str]:
    """The deltas of one stream, the error that ended it (if any), and its call id."""
    request, call = generation(plan)
    deltas: list[Delta] = []
    try:
        async for delta in provider.stream(request):
            deltas.append(delta)
    except ProviderError as exc:
        return deltas, exc, call
    return deltas, None, call


def text(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


@pytest.mark.parametrize(
    "plan",
    [
        "status-503-after-0+status-500-after-0+words-3",
        "status-429-after-0+words-3",
        "status-502-after-0+status-504-after-0+words-3",
        "reset+words-3",
    ],
)
async def test_provider_retries_failures_before_the_first_token(
    make_provider: MakeProvider, upstream: FaultUpstream, plan: str
) -> None:
    deltas, error, call = await run(make_provider(), plan)

    assert error is None
    assert text(deltas) == "w0 w1 w2 "
    assert deltas[-1] == Finish("stop")
    assert [s.step for s in upstream.served(call)] == plan.split("+")


async def test_provider_waits_as_long_as_retry_after_asks(
    make_provider: MakeProvider, upstream: FaultUpstream
) -> None:
    deltas, error, call = await run(make_provider(), "status-503-after-1+words-2")

    assert error is None and text(deltas) == "w0 w1 "
    first, second = upstream.served(call)
    assert second.at - first.at >= 0.95


async def test_provider_gives_up_after_max_retries_and_says_how_often_it_tried(
    make_provider: MakeProvider, upstream: FaultUpstream
) -> None:
    deltas, error, call = await run(make_provider(max_retries=1), "status-503-after-0")

    assert deltas == [] and error is not None
    assert (error.code, error.status) == ("server_error", 503)
    assert error.message == (
        "Upstream model 'faulty' returned HTTP 503: fault upstream: HTTP 503"
        " (gave up after 2 attempts; max_retries = 1)"
    )
    assert len(upstream.served(call)) == 2


async def test_provider_does_not_retry_other_client_errors(
    make_provider: MakeProvider, upstream: FaultUpstream
) -> None:
    _, error, call = await run(make_provider(), "status-400+words-2")

    assert error is not None and error.status == 400
    assert error.message == "Upstream model 'faulty' returned HTTP 400: fault upstream: HTTP 400"
    assert len(upstream.served(call)) == 1


@pytest.mark.parametrize(
    ("plan", "fragment"),
    [
        ("error-after-2-503+words-2", "fault upstream: error 503 after tokens"),
        ("reset-after-2+words-2", "dropped the connection mid-stream"),
    ],
)
async def test_provider_does_not_retry_after_the_first_token(
    make_provider: MakeProvider, upstream: FaultUpstream, plan: str, fragment: str
) -> None:
    deltas, error, call = await run(make_provider(), plan)

    assert text(deltas) == "w0 w1 "
    assert error is not None and fragment in error.message
    assert "attempt" not in error.message
    assert len(upstream.served(call)) == 1


async def test_provider_fails_unreachable_upstream_after_bounded_retries() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    provider = ChatProvider.from_options("m", {"base_url": base_url})
    started = time.monotonic()
    try:
        _, error, _ = await run(provider, "words-1")
    finally:
        await provider.aclose()

    assert error is not None
    assert f"could not be reached at {base_url}" in error.message
    assert error.message.endswith("(gave up after 3 attempts; max_retries = 2)")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("plan", ["hang", "keepalive", "status-503-after-0+hang"])
async def test_provider_first_token_timeout_names_the_option(
    make_provider: MakeProvider, upstream: FaultUpstream, plan: str
) -> None:
    provider = make_provider(first_token_timeout_seconds=0.3, inter_token_timeout_seconds=30)
    deltas, error, call = await run(provider, plan)

    assert deltas == [] and error is not None
    assert "sent no token within 0.3 seconds (option first_token_timeout_seconds)" in (
        error.message
    )
    assert error.message.startswith("Upstream model 'faulty' at ")
    assert len(upstream.served(call)) == len(plan.split("+"))  # a timeout is not retried


async def test_provider_inter_token_timeout_names_the_option(
    make_provider: MakeProvider,
) -> None:
    provider = make_provider(first_token_timeout_seconds=30, inter_token_timeout_seconds=0.3)
    deltas, error, _ = await run(provider, "hang-after-2")

    assert text(deltas) == "w0 w1 "
    assert error is not None
    assert "stalled mid-stream: no data for 0.3 seconds after a token" in error.message
    assert "(option inter_token_timeout_seconds)" in error.message


async def test_provider_first_token_timeout_does_not_limit_a_long_answer(
    make_provider: MakeProvider,
) -> None:
    # The answer takes twice the first-token timeout: its deadline must end at the
    # first token.
    provider = make_provider(first_token_timeout_seconds=0.3, inter_token_timeout_seconds=5)
    deltas, error, _ = await run(provider, "paced-7-100")

    assert error is None
    assert text(deltas) == "w0 w1 w2 w3 w4 w5 w6 "


@pytest.mark.parametrize(
    ("plan", "fragment"),
    [
        ("bad-json", "malformed stream"),
        ("bad-json-after-2", "malformed stream"),
        ("long-line", "sent an SSE line longer than 8388608 bytes"),
        ("garbage-after-2", "closed the stream before finishing"),
    ],
)
async def test_provider_fails_clearly_on_malformed_sse_without_retrying(
    make_provider: MakeProvider, upstream: FaultUpstream, plan: str, fragment: str
) -> None:
    deltas, error, call = await run(make_provider(), plan)

    assert error is not None and fragment in error.message
    assert error.message.startswith("Upstream model 'faulty' ")
    assert text(deltas) == ("w0 w1 " if "after-2" in plan else "")
    assert len(upstream.served(call)) == 1
