"""Per-key limits (`tether/api/limits.py`): requests per minute and responses in
flight, on `Limits` with a controlled clock, then through an in-process app.

Sections: requests per minute · responses in flight · through the app.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from tests.support.stores import new_response
from tether.api import limits as limits_module
from tether.api.app import create_app
from tether.api.limits import Limits, RateLimitError
from tether.domain.response import ResponseStatus
from tether.providers.registry import ModelConfig
from tether.settings import Settings
from tether.storage.base import Principal, Storage
from tether.storage.memory import open_memory

ACME = Principal("acme", "key-a")
BETA = Principal("beta", "key-b")
ADMIN = Principal("", "admin", admin=True)
ACME_KEY = "acme-static-key-0123456789"
BETA_KEY = "beta-static-key-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limits(clock: Clock, *, per_minute: int = 0, in_flight: int = 0) -> Limits:
    settings = replace(
        Settings(), requests_per_minute_per_key=per_minute, max_in_flight_per_key=in_flight
    )
    return Limits(settings, clock)


# --- requests per minute --------------------------------------------------------------


def test_requests_per_minute_allow_a_burst_then_refuse_with_retry_after(clock: Clock) -> None:
    counted = limits(clock, per_minute=3)
    for _ in range(3):
        counted.count_request(ACME)
    with pytest.raises(RateLimitError) as refused:
        counted.count_request(ACME)
    error = refused.value
    assert (error.status_code, error.code, error.error_type) == (
        429,
        "rate_limit_exceeded",
        "requests",
    )
    assert error.headers == {"Retry-After": "20"}  # one request per 20 s at 3 per minute
    assert "3 requests per minute" in error.message
    assert "requests_per_minute_per_key" in error.message
    counted.count_request(BETA)  # every key has its own minute
    counted.count_request(ADMIN)  # the admin key has none


def test_requests_per_minute_refill_at_the_limits_pace(clock: Clock) -> None:
    counted = limits(clock, per_minute=60)
    for _ in range(60):
        counted.count_request(ACME)
    with pytest.raises(RateLimitError):
        counted.count_request(ACME)
    clock.now += 1.0
    counted.count_request(ACME)
    with pytest.raises(RateLimitError) as refused:
        counted.count_request(ACME)
    assert refused.value.headers == {"Retry-After": "1"}
    clock.now += 120.0  # a full bucket, never more than the limit
    for _ in range(60):
        counted.count_request(ACME)
    with pytest.raises(RateLimitError):
        counted.count_request(ACME)


def test_no_limit_is_the_default(clock: Clock) -> None:
    counted = limits(clock)
    for _ in range(10_000):
        counted.count_request(ACME)


# --- responses in flight ------------------------------------------------------------


async def created(storage: Storage) -> str:
    new = new_response()
    await storage.responses.create(new)
    return new.id


async def test_in_flight_limit_refuses_until_a_response_ends(clock: Clock) -> None:
    storage = open_memory()
    counted = limits(clock, in_flight=2)
    first, second = await created(storage), await created(storage)
    await counted.admit(ACME, storage, first)
    await counted.admit(ACME, storage, second)
    third = await created(storage)
    with pytest.raises(RateLimitError) as refused:
        await counted.admit(ACME, storage, third)
    assert refused.value.headers == {"Retry-After": "1"}
    assert "at most 2" in refused.value.message
    assert "max_in_flight_per_key" in refused.value.message
    await counted.admit(BETA, storage, third)  # another key's count
    await storage.responses.terminate(first, ResponseStatus.CANCELLED)
    with pytest.raises(RateLimitError):  # looked up again at most once a second
        await counted.admit(ACME, storage, third)
    clock.now += 1.0
    await counted.admit(ACME, storage, third)
    with pytest.raises(RateLimitError):
        await counted.admit(ACME, storage, await created(storage))
    assert "in_flight=3" in repr(counted)


async def test_in_flight_limit_forgets_deleted_and_never_created_responses(
    clock: Clock,
) -> None:
    storage = open_memory()
    counted = limits(clock, in_flight=2)
    deleted = await created(storage)
    await counted.admit(ACME, storage, deleted)
    await counted.admit(ACME, storage, "resp_never_created")  # its create failed
    await storage.responses.delete(deleted)
    clock.now += 1.0
    with pytest.raises(RateLimitError):  # the missing one may still be on its way
        await counted.admit(ACME, storage, await created(storage))
    clock.now += limits_module.CREATE_GRACE_SECONDS
    await counted.admit(ACME, storage, await created(storage))
    await counted.admit(ACME, storage, await created(storage))


async def test_in_flight_limit_spares_the_admin_key_and_is_off_by_default(clock: Clock) -> None:
    storage = open_memory()
    for counted, principal in [(limits(clock, in_flight=1), ADMIN), (limits(clock), ACME)]:
        for _ in range(3):
            await counted.admit(principal, storage, await created(storage))


# --- through the app -----------------------------------------------------------------

SLOW = ModelConfig("slow", "fake", {"output_tokens": 400, "tokens_per_second": 20})


@pytest.fixture
def app_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    changes = request.param
    settings = dataclasses.replace(
        Settings(store="memory://", models=(SLOW,)),
        api_keys=f"acme={ACME_KEY},beta={BETA_KEY}",
        **changes,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("app_client", [{"requests_per_minute_per_key": 2}], indirect=True)
def test_app_answers_429_with_retry_after_beyond_requests_per_minute(
    app_client: TestClient,
) -> None:
    for _ in range(2):
        assert app_client.get("/v1/models", headers=headers(ACME_KEY)).status_code == 200
    refused = app_client.get("/v1/models", headers=headers(ACME_KEY))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "30"
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "requests_per_minute_per_key" in error["message"]
    assert app_client.get("/v1/models", headers=headers(BETA_KEY)).status_code == 200
    assert app_client.get("/healthz").status_code == 200


@pytest.mark.parametrize("app_client", [{"max_in_flight_per_key": 1}], indirect=True)
def test_app_answers_429_beyond_the_responses_in_flight(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits_module, "RECHECK_SECONDS", 0.0)
    body = {"model": "slow", "input": "hi", "background": True}
    first = app_client.post("/v1/responses", json=body, headers=headers(ACME_KEY))
    assert first.status_code == 200
    refused = app_client.post("/v1/responses", json=body, headers=headers(ACME_KEY))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    other = app_client.post("/v1/responses", json=body, headers=headers(BETA_KEY))
    assert other.status_code == 200
    cancel = f"/v1/responses/{first.json()['id']}/cancel"
    assert app_client.post(cancel, headers=headers(ACME_KEY)).status_code == 200
    again = app_client.post("/v1/responses", json=body, headers=headers(ACME_KEY))
    assert again.status_code == 200
    for answer in (other, again):
        path = f"/v1/responses/{answer.json()['id']}/cancel"
        key = BETA_KEY if answer is other else ACME_KEY
        app_client.post(path, headers=headers(key))
