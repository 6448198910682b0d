"""`--zero-data-retention`: nothing is written to disk; stored and background
responses are refused with a 400 that explains the mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from tests.support.server import TetherProcess

MakeServer = Callable[..., TetherProcess]


@pytest.fixture
def zdr(make_server: MakeServer) -> TetherProcess:
    return make_server(TETHER_ZERO_DATA_RETENTION="1")


def test_zero_data_retention_serves_without_storing(zdr: TetherProcess) -> None:
    client = openai.OpenAI(base_url=zdr.base_url, api_key="unused", max_retries=0)

    response = client.responses.create(model="fake", input="hi")
    streamed = list(client.responses.create(model="fake", input="hi", stream=True))

    assert response.status == "completed" and response.output_text
    assert streamed[-1].type == "response.completed"
    assert response.model_dump().get("store") is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)  # kept only while its request was open
    for refused, param in (({"store": True}, "store"), ({"background": True}, "background")):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="fake", input="hi", **refused)  # type: ignore[call-overload]
        assert "zero-data-retention" in caught.value.message
        assert isinstance(caught.value.body, dict) and caught.value.body["param"] == param
    with pytest.raises(openai.BadRequestError):
        client.conversations.create()
    database = Path(zdr.store.removeprefix("sqlite:///"))
    assert not database.exists()
    assert not list(zdr.workdir.glob("*.db*"))
