"""When to call an upstream model again, and how long to wait for one: the retry
policy and timeout options the `chat` and `responses` providers share.

A call is retried only while nothing of it has reached the runner: a connection that
could not be made, an HTTP 429, 500, 502, 503 or 504 answer, a connection dropped
before the first token. Other 4xx answers, malformed streams and timeouts fail at
once: a 4xx fails the same way again, and retrying a hung upstream would make the
client wait one timeout per attempt. After the first token nothing is retried: the
runner has already written it, and a new attempt would write a different answer
after it.

Between attempts the wait grows exponentially (0.5 s, 1 s, 2 s, … at most 8 s), each
wait up to a quarter shorter at random so that many callers turned away together do
not return together — unless the upstream said how long to wait (`Retry-After` in
seconds or as an HTTP date, or OpenAI's `retry-after-ms`). Two options bound the
retries of one call:

    max_retries           retries after the first attempt (default 2: 3 attempts)
    retry_budget_seconds  no retry starts later than this after the first attempt
                          (default 30); a Retry-After beyond it ends the call at once

and two say how long to wait for tokens (both default to `timeout_seconds`):

    first_token_timeout_seconds  from sending the request to the first token,
                                 whatever else the upstream sends meanwhile
    inter_token_timeout_seconds  after the first token, the longest the upstream
                                 may send nothing at all

The final error of a call that was retried says how many attempts were made.

Sections: options, the policy, attempts, Retry-After.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from tether.errors import ConfigError, ProviderError
from tether.providers.http import ConnectFailed, ReadTimedOut, UpstreamHTTPError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRIES = 2  # the option's default
BUDGET_SECONDS = 30.0  # the option's default
BASE_DELAY = 0.5  # seconds before the first retry
MAX_DELAY = 8.0
JITTER = 0.25  # a wait is up to this fraction shorter, at random

# The options of this module, for the providers' lists of known options and types.
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "max_retries": (int,),
    "retry_budget_seconds": (int, float),
    "first_token_timeout_seconds": (int, float),
    "inter_token_timeout_seconds": (int, float),
}


# --- options ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a provider waits for the first token, and between tokens."""

    first_token: float = 600.0
    inter_token: float = 600.0

    @classmethod
    def from_options(cls, where: str, options: Mapping[str, Any], default: float) -> Timeouts:
        """The timeout options (types already checked); `default` is `timeout_seconds`.
        Raises `ConfigError` for a value that is not positive."""
        first = float(options.get("first_token_timeout_seconds", default))
        inter = float(options.get("inter_token_timeout_seconds", default))
        for key, value in (("first_token", first), ("inter_token", inter)):
            if value <= 0:
                raise ConfigError(f"{where}: option '{key}_timeout_seconds' must be positive.")
        return cls(first, inter)


# --- the policy ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and for how long one upstream call may be retried."""

    max_retries: int = MAX_RETRIES
    budget_seconds: float = BUDGET_SECONDS

    @classmethod
    def from_options(cls, where: str, options: Mapping[str, Any]) -> RetryPolicy:
        """The retry options (types already checked); raises `ConfigError` for a
        negative value."""
        retries = options.get("max_retries", MAX_RETRIES)
        budget = float(options.get("retry_budget_seconds", BUDGET_SECONDS))
        if retries < 0:
            raise ConfigError(f"{where}: option 'max_retries' must be 0 (no retries) or more.")
        if budget < 0:
            raise ConfigError(f"{where}: option 'retry_budget_seconds' must be 0 or more.")
        return cls(retries, budget)

    def backoff(self, retry: int, rand: float) -> float:
        """The wait before retry number `retry` (1, 2, …) when the upstream did not say;
        `rand` in [0, 1) shortens it by up to `JITTER`."""
        return min(BASE_DELAY * 2.0 ** (retry - 1), MAX_DELAY) * (1 - JITTER * rand)


class RetryableError(ProviderError):
    """A failure before the first token that another attempt may not meet; carries
    the wait the upstream asked for, if any. `Attempts` never lets one escape."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "server_error",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


def retryable(error: ProviderError, retry_after: float | None = None) -> RetryableError:
    return RetryableError(
        error.message, code=error.code, status=error.status, retry_after=retry_after
    )


def status_failure(error: ProviderError, headers: Sequence[tuple[bytes, bytes]]) -> ProviderError:
    """`error`, made of an HTTP error answer, as retryable when its status is one an
    upstream may not give again (429, 500, 502, 503, 504), with its Retry-After."""
    if error.status in RETRY_STATUSES:
        return retryable(error, retry_after(headers))
    return error


def transport_failure(
    error: Callable[[str], ProviderError],
    at: str,
    timeouts: Timeouts,
    exc: UpstreamHTTPError,
    *,
    emitted: bool,
) -> ProviderError:
    """The error for a stream whose connection failed (`error` makes a `ProviderError`
    naming the model; `at` names the upstream): retryable when no delta had been
    `emitted` and it was no timeout; a timeout names the option that set it."""
    if isinstance(exc, ReadTimedOut):
        if emitted:
            return error(
                f"{at} stalled mid-stream: no data for {timeouts.inter_token:g} seconds after"
                " a token (option inter_token_timeout_seconds)"
            )
        return error(
            f"{at} sent no token within {timeouts.first_token:g} seconds"
            " (option first_token_timeout_seconds)"
        )
    if emitted:
        return error(f"{at} dropped the connection mid-stream: {exc}")
    if isinstance(exc, ConnectFailed):
        return retryable(error(f"could not be reached {at}: {exc}"))
    return retryable(error(f"{at} dropped the connection before the first token: {exc}"))


# --- attempts --------------------------------------------------------------------------


class Attempts:
    """The attempts of one upstream call. After a failed attempt, `failed(error)` waits
    before the next one, or raises the call's final `ProviderError`."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.count = 1
        self._clock, self._sleep, self._rand = clock, sleep, rand
        self._began = clock()

    def __repr__(self) -> str:
        return f"<Attempts {self.count} of at most {self.policy.max_retries + 1}>"

    async def failed(self, error: ProviderError) -> None:
        """Wait before the next attempt; raise the final error (saying how many attempts
        were made) when `error` is not retryable or no retry is left."""
        policy, count = self.policy, self.count
        if not isinstance(error, RetryableError):
            if count == 1:
                raise error
            raise self._final(error, f"on attempt {count}; the earlier ones failed before it")
        attempts = f"gave up after {count} attempt{'s' if count > 1 else ''}"
        if count > policy.max_retries:
            raise self._final(error, f"{attempts}; max_retries = {policy.max_retries}")
        wait = error.retry_after
        if wait is None:
            wait = policy.backoff(count, self._rand())
        left = policy.budget_seconds - (self._clock() - self._began)
        if wait > left:
            budget = f"retry_budget_seconds = {policy.budget_seconds:g}"
            if error.retry_after is None:
                raise self._final(error, f"{attempts}; the next would start past {budget}")
            raise self._final(
                error, f"{attempts}; it asked to retry after {wait:g} seconds, past {budget}"
            )
        await self._sleep(wait)
        self.count += 1

    @staticmethod
    def _final(error: ProviderError, note: str) -> ProviderError:
        return ProviderError(f"{error.message} ({note})", code=error.code, status=error.status)


# --- Retry-After -----------------------------------------------------------------------


def retry_after(
    headers: Sequence[tuple[bytes, bytes]], now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the upstream asked to wait (`retry-after-ms`, else `Retry-After` as
    seconds or an HTTP date; a date in the past is 0), or None when it did not say
    or said something unreadable. `headers` have lower-case names."""
    values = dict(headers)
    if (millis := _number(values.get(b"retry-after-ms"))) is not None:
        return millis / 1000
    raw = values.get(b"retry-after")
    if raw is None:
        return None
    if (seconds := _number(raw)) is not None:
        return seconds
    try:
        when = parsedate_to_datetime(raw.decode("latin-1"))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT, always
        return None
    return max(0.0, when.timestamp() - now())


def _number(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    if value != value or value < 0 or value == float("inf"):  # NaN, negative, inf
        return None
    return value
