"""Per-key limits: requests per minute, and responses in flight at once. Beyond either,
a 429 `rate_limit_exceeded` with a `Retry-After` header and a message that names the
limit and its setting.

- `requests_per_minute_per_key`: a token bucket per key, full at start, refilled at
  the limit's pace, so a key may spend its minute in a burst and then one request per
  `60 / limit` seconds. Every request a key makes counts.
- `max_in_flight_per_key`: responses of the key that are queued or generating (a
  response counts from its create until it is terminal, whether or not anyone is
  connected to it; a background one too). The responses a key created are
  remembered; only when the key is at its limit are they looked up again to drop the
  ones that ended (at most once a second), so the cost is paid at the limit only.
- The admin key has no limits.

Both are counted in this process's memory: behind a load balancer with N API
replicas a key may get up to N times the limit. The state is bounded: a bucket and
at most `max_in_flight_per_key` response ids per key.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from tether.api.auth import principal
from tether.errors import APIError
from tether.settings import Settings
from tether.storage.base import Principal, Storage

RECHECK_SECONDS = 1.0  # how often a key at its in-flight limit looks its responses up
CREATE_GRACE_SECONDS = 5.0  # a response admitted but not found yet may still be created


class RateLimitError(APIError):
    status_code = 429
    error_type = "requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, code="rate_limit_exceeded")
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # monotonic time of `tokens`


@dataclass(slots=True)
class _Flight:
    storage: Storage
    admitted_at: float


@dataclass(slots=True)
class _Flights:
    responses: dict[str, _Flight] = field(default_factory=dict)
    checked_at: float = -math.inf


class Limits:
    """This process's count of each key's requests and responses in flight."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._per_minute = settings.requests_per_minute_per_key
        self._in_flight = settings.max_in_flight_per_key
        self._buckets: dict[str, _Bucket] = {}
        self._flights: dict[str, _Flights] = {}

    def __repr__(self) -> str:
        flying = sum(len(f.responses) for f in self._flights.values())
        return f"<Limits keys={len(self._buckets)} in_flight={flying}>"

    def count_request(self, principal: Principal) -> None:
        """Count one request of the key; raises `RateLimitError` beyond its minute."""
        limit = self._per_minute
        if limit <= 0 or principal.admin:
            return
        now = self._clock()
        bucket = self._buckets.get(principal.key_id)
        if bucket is None:
            bucket = self._buckets[principal.key_id] = _Bucket(float(limit), now)
        rate = limit / 60.0
        bucket.tokens = min(float(limit), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            wait = max(1, math.ceil((1.0 - bucket.tokens) / rate))
            raise RateLimitError(
                f"Rate limit reached for API key {principal.key_id}: {limit} requests per "
                f"minute (setting requests_per_minute_per_key, counted per server process). "
                f"Try again in {wait} s.",
                wait,
            )
        bucket.tokens -= 1.0

    async def admit(self, principal: Principal, storage: Storage, response_id: str) -> None:
        """Count response `response_id` (about to be created in `storage`) as in flight
        for the key; raises `RateLimitError` when the key has its limit in flight."""
        limit = self._in_flight
        if limit <= 0 or principal.admin:
            return
        flights = self._flights.get(principal.key_id)
        if flights is None:
            flights = self._flights[principal.key_id] = _Flights()
        now = self._clock()
        if len(flights.responses) >= limit and now - flights.checked_at >= RECHECK_SECONDS:
            flights.checked_at = now
            await _drop_ended(flights, now)
        if len(flights.responses) >= limit:  # checked again after the await: no overshoot
            raise RateLimitError(
                f"Too many responses in flight for API key {principal.key_id}: at most {limit} "
                "may be queued or generating at once (setting max_in_flight_per_key, counted "
                "per server process). Wait for one to finish, or cancel one.",
                max(1, math.ceil(RECHECK_SECONDS)),
            )
        flights.responses[response_id] = _Flight(storage, now)


async def _drop_ended(flights: _Flights, now: float) -> None:
    """Forget the responses that are terminal, or gone (deleted, or never created)."""
    entries = list(flights.responses.items())
    found = await asyncio.gather(
        *(flight.storage.responses.get(response_id) for response_id, flight in entries),
        return_exceptions=True,
    )
    for (response_id, flight), stored in zip(entries, found, strict=True):
        if isinstance(stored, BaseException):
            continue  # unknown: still counted
        gone = stored is None and now - flight.admitted_at > CREATE_GRACE_SECONDS
        if gone or (stored is not None and stored.status.terminal):
            flights.responses.pop(response_id, None)


async def admit_response(request: HTTPConnection, storage: Storage, response_id: str) -> None:
    """`Limits.admit` for the request's key (see `auth.principal`)."""
    limits: Limits = request.app.state.limits
    await limits.admit(principal(request), storage, response_id)
