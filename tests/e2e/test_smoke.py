from __future__ import annotations

import openai


def test_create_blocking_returns_completed_response(client: openai.OpenAI) -> None:
    response = client.responses.create(model="fake", input="hello")
    assert response.status == "completed"
    assert response.output_text.startswith("lorem ipsum")
