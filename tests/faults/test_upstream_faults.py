"""Upstream faults through a real `tether serve`: a model upstream that refuses
connections, resets them, answers 429/5xx, fails after tokens, hangs, or sends broken
SSE — for a Chat Completions and a Responses upstream alike.

Each response is streamed to its end and checked: gapless, one terminal event, its
stored snapshot equal to that event's, every token the upstream sent before a failure
kept. Before the first token, failures are retried (bounded); after it, never.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.faults.conftest import Tally
from tests.support.fault_upstream import FaultUpstream
from tests.support.server import TetherProcess, free_port
from tests.support.sse import SSE, Frame, assert_gapless

pytestmark = pytest.mark.faults

KINDS = ["chat", "resp"]
TIMEOUT_SECONDS = 1  # first-token and inter-token timeouts of the faulty models
BUDGET_SECONDS = 2  # the retry budget of the `*-budget` models


def models(upstream_url: str, refused_url: str) -> str:
    text = ""
    for kind, provider in (("chat", "chat"), ("resp", "responses")):
        for name, url, extra in (
            (f"{kind}-faulty", upstream_url, ""),
            (f"{kind}-refused", refused_url, ""),
            (f"{kind}-budget", upstream_url, f"retry_budget_seconds = {BUDGET_SECONDS}\n"),
        ):
            text += (
                f'[[models]]\nname = "{name}"\nprovider = "{provider}"\nbase_url = "{url}"\n'
                f"first_token_timeout_seconds = {TIMEOUT_SECONDS}\n"
                f"inter_token_timeout_seconds = {TIMEOUT_SECONDS}\n{extra}\n"
            )
    return text


@pytest.fixture(scope="module")
def tether(
    tmp_path_factory: pytest.TempPathFactory, fault_upstream: FaultUpstream
) -> Iterator[TetherProcess]:
    refused = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    process = TetherProcess(tmp_path_factory.mktemp("faults"), models(fault_upstream.url, refused))
    process.start()
    yield process
    process.stop()


class Run:
    """One streamed response of a plan, read to its end and checked."""

    def __init__(self, tether: TetherProcess, upstream: FaultUpstream, model: str, plan: str):
        self.call = uuid.uuid4().hex[:12]
        body = {"model": model, "input": f"plan={plan} call={self.call}", "stream": True}
        self.frames = SSE.post(tether, body).read_all()
        assert_gapless(self.frames)
        self.final: dict[str, Any] = self.frames[-1].payload["response"]
        stored = httpx.get(f"{tether.base_url}/responses/{self.final['id']}", timeout=5).json()
        assert stored == self.final
        self.served = [s.step for s in upstream.served(self.call)]

    @property
    def text(self) -> str:
        return "".join(f.payload["delta"] for f in self.text_deltas)

    @property
    def text_deltas(self) -> list[Frame]:
        return [f for f in self.frames if f.event == "response.output_text.delta"]

    @property
    def error(self) -> dict[str, Any]:
        assert self.frames[-1].event == "response.failed", self.frames[-1].payload
        assert self.frames[-2].event == "error"
        error: dict[str, Any] = self.final["error"]
        assert {k: self.frames[-2].payload[k] for k in ("code", "message")} == error
        return error

    def count(self, tally: Tally, words: int) -> None:
        """Add to the tally: the faults served, this response, the words it lost."""
        tally.faults += sum(not s.startswith(("words-", "paced-")) for s in self.served)
        tally.responses += 1
        tally.events_lost += words - len(self.text_deltas)


def words(count: int) -> str:
    return "".join(f"w{i} " for i in range(count))


# --- failures before the first token: retried ----------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "plan",
    [
        "status-429-after-1+words-12",
        "status-429-date-2+words-12",
        "status-500+status-502+words-12",
        "status-503+words-12",
        "reset+words-12",
    ],
)
def test_upstream_failure_before_first_token_is_retried_and_completes(
    tether: TetherProcess, fault_upstream: FaultUpstream, tally: Tally, kind: str, plan: str
) -> None:
    run = Run(tether, fault_upstream, f"{kind}-faulty", plan)
    run.count(tally, 12)

    assert run.frames[-1].event == "response.completed"
    assert run.text == words(12)
    assert run.served == plan.split("+")
    if "-after-" in plan or "-date-" in plan:  # Retry-After was honoured
        first, second = fault_upstream.served(run.call)
        assert second.at - first.at >= 0.95


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [429, 503])
def test_upstream_failing_every_attempt_fails_after_bounded_retries(
    tether: TetherProcess, fault_upstream: FaultUpstream, tally: Tally, kind: str, status: int
) -> None:
    run = Run(tether, fault_upstream, f"{kind}-faulty", f"status-{status}")
    run.count(tally, 0)

    assert run.served == [f"status-{status}"] * 3
    assert run.error["code"] == ("rate_limit_exceeded" if status == 429 else "server_error")
    assert run.error["message"] == (
        f"Upstream model '{kind}-faulty' returned HTTP {status}: fault upstream: HTTP {status}"
        " (gave up after 3 attempts; max_retries = 2)"
    )
    assert run.final["output"] == []


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_refusing_connections_fails_after_bounded_retries(
    tether: TetherProcess, fault_upstream: FaultUpstream, tally: Tally, kind: str
) -> None:
    run = Run(tether, fault_upstream, f"{kind}-refused", "words-3")
    run.count(tally, 0)
    tally.faults += 3  # three refused connections

    assert run.error["code"] == "server_error"
    assert (
        f"Upstream model '{kind}-refused' could not be reached at http://127.0.0.1:"
        in (run.error["message"])
    )
    assert run.error["message"].endswith("(gave up after 3 attempts; max_retries = 2)")


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_retry_after_past_the_budget_fails_at_once(
    tether: TetherProcess, fault_upstream: FaultUpstream, tally: Tally, kind: str
) -> None:
    run = Run(tether, fault_upstream, f"{kind}-budget", "status-429-after-60+words-3")
    run.count(tally, 0)

    assert run.served == ["status-429-after-60"]
    assert run.error["code"] == "rate_limit_exceeded"
    assert run.error["message"].endswith(
        "HTTP 429: fault upstream: HTTP 429 (gave up after 1 attempt; it asked to retry"
        f" after 60 seconds, past retry_budget_seconds = {BUDGET_SECONDS})"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_client_error_is_not_retried(
    tether: TetherProcess, fault_upstream: FaultUpstream, tally: Tally, kind: str
) -> None:
    run = Run(tether, fault_upstream, f"{kind}-faulty", "status-400+words-3")
    run.count(tally, 0)

    assert run.served == ["status-400"]
    assert run.error["message"].endswith("returned HTTP 400: fault upstream: HTTP 400")


# --- failures after tokens: never retried ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("error-after-4-429+words-12", "fault upstream: error 429 after tokens"),
        ("error-after-4-500+words-12", "fault upstream: error 500 after tokens"),
        ("error-after-4-502+words-12", "fault upstream: error 502 after tokens"),
        ("error-after-4-503+words-12", "fault upstream: error 503 after tokens"),
        ("reset-after-4+words-12", "dropped the connection mid-stream"),
    ],
)
def test_upstream_failure_after_tokens_fails_with_its_error_and_keeps_the_tokens(
    tether: TetherProcess,
    fault_upstream: FaultUpstream,
    tally: Tally,
    kind: str,
    plan: str,
    message: str,
) -> None:
    run = Run(tether, fault_upstream, f"{kind}-faulty", plan)
    run.count(tally, 4)

    assert run.served == [plan.split("+")[0]]  # one attempt: no retry after a token
    assert run.text == words(4)
    assert message in run.error["message"]
    assert run.error["message"].startswith(f"Upstream model '{kind}-faulty' ")
    if kind == "resp" and "429" in plan:  # the Responses upstream's code is kept
        assert run.error["code"] == "rate_limit_exceeded"
    else:
        assert run.error["code"] == "server_error"
    message_item = run.final["output"][0]
    assert message_item["content"][0]["text"] == words(4)


# --- an upstream that hangs -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("plan", "kept", "message"),
    [
        ("hang", 0, "sent no token within 1 seconds (option first_token_timeout_seconds)"),
        ("keepalive", 0, "sent no token within 1 seconds (option first_token_timeout_seconds)"),
        (
            "hang-after-4",
            4,
            "stalled mid-stream: no data for 1 seconds after a token"
            " (option inter_token_timeout_seconds)",
        ),
    ],
)
def test_upstream_that_hangs_times_out_with_a_message_naming_the_timeout(
    tether: TetherProcess,
    fault_upstream: FaultUpstream,
    tally: Tally,
    kind: str,
    plan: str,
    kept: int,
    message: str,
) -> None:
    run = Run(tether, fault_upstream, f"{kind}-faulty", plan)
    run.count(tally, kept)

    assert run.served == [plan]  # a timeout is not retried
    assert run.text == words(kept)
    assert run.error["code"] == "server_error"
    assert run.error["message"].startswith(f"Upstream model '{kind}-faulty' at ")
    assert run.error["message"].endswith(message)


# --- malformed SSE --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("plan", "kept", "message"),
    [
        ("bad-json+words-3", 0, "malformed stream"),
        ("bad-json-after-4+words-3", 4, "malformed stream"),
        ("long-line+words-3", 0, "sent an SSE line longer than 8388608 bytes"),
        ("garbage-after-4+words-3", 4, "closed the stream before finishing"),
    ],
)
def test_upstream_malformed_sse_fails_clearly(
    tether: TetherProcess,
    fault_upstream: FaultUpstream,
    tally: Tally,
    kind: str,
    plan: str,
    kept: int,
    message: str,
) -> None:
    run = Run(tether, fault_upstream, f"{kind}-faulty", plan)
    run.count(tally, kept)

    assert run.served == [plan.split("+")[0]]
    assert run.text == words(kept)
    assert message in run.error["message"]
    assert run.error["message"].startswith(f"Upstream model '{kind}-faulty' ")
