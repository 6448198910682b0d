"""Schemathesis against a real Tether process, driven by Tether's own `/openapi.json`.

Every operation gets generated requests, valid and invalid ones; every answer must be
no 5xx, have a documented status, content type and headers, and match the documented
schema (JSON bodies, and each event of an SSE stream); invalid requests must be
refused. Requests about responses use, half the time, ids of stored responses in each
final state (`existing_responses`), and valid create bodies mostly name a served model
(`served`), so that real answers are checked and not only 404s; a stateful run chains
the conversation operations through the ids they answer.

Not checked: that every schema-valid request is accepted
(`positive_data_acceptance`). Tether validates more than JSON Schema can say (ids
that must exist, a tool's `parameters` that must be a valid JSON Schema, `tool_choice`
naming a given tool, …) and answers those with the OpenAI-shaped 400 the document
lists; `test_properties` checks the shape of every such answer.

Bugs the fuzzing found are pinned by the regression tests at the end.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import allow_header_conformance, positive_data_acceptance

from tests.fuzz.conftest import MODELS
from tether.api.openapi import document_bytes

pytestmark = pytest.mark.fuzz
Case = schemathesis.Case[Any]

DOCUMENT: dict[str, Any] = orjson.loads(document_bytes())
# The coverage phase enumerates boundary cases of every schema: thousands for the
# create body alone, far past this suite's time budget.
CONFIG = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
# `allow_header_conformance` is checked by `test_method_not_allowed_lists_the_path_methods`.
EXCLUDED = [positive_data_acceptance, allow_header_conformance]
SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
_MODEL_PATHS = ("/v1/responses", "/v1/responses/input_tokens")


# Ids of stored responses in each final state, made afresh for every test (a test may
# delete them) by `existing_responses`, for `existing`.
_EXISTING: list[str] = []


@pytest.fixture(autouse=True)
def existing_responses(fuzz_origin: str) -> None:
    url = f"{fuzz_origin}/v1/responses"
    made = [
        httpx.post(url, json={"model": model, "input": "hi"}, timeout=30).json()["id"]
        for model in ("fake", "failing", "reasoner")
    ]
    background = {"model": "slow", "input": "hi", "background": True}
    queued = httpx.post(url, json=background, timeout=30).json()
    cancelled = httpx.post(f"{url}/{queued['id']}/cancel", timeout=30)
    assert cancelled.json()["status"] == "cancelled"
    _EXISTING[:] = [*made, queued["id"]]


@schema.hook
def flatmap_case(context: schemathesis.HookContext, case: Case) -> Any:
    """Served models and existing ids for valid requests; see `served`, `existing`."""
    positive = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
    if not positive:
        return st.just(case)
    if case.operation.path in _MODEL_PATHS and isinstance(case.body, dict):
        return served(case, case.body)
    if "response_id" in (case.path_parameters or {}):
        return existing(case, case.path_parameters["response_id"])
    return st.just(case)


def served(case: Case, body: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Generated model names and stored-context ids are unknown (404): most valid create
    bodies name a served model instead, half of them stream and half start afresh, so
    that generation and SSE answers are checked too."""

    def named(model: Any, stream: Any, fresh: bool) -> Case:
        case.body = {**body, "model": model, "stream": stream}
        if fresh and "input" in body:  # the ids of a stored context would be unknown (404)
            case.body |= {"previous_response_id": None, "conversation": None}
        return case

    models = st.sampled_from([*MODELS, body.get("model")])
    streams = st.sampled_from([True, body.get("stream")])
    return st.builds(named, models, streams, st.booleans())


def existing(case: Case, generated: str) -> st.SearchStrategy[Any]:
    """Half the time, the id of a stored response instead of the generated one."""

    def with_id(response_id: str) -> Case:
        assert case.path_parameters is not None
        case.path_parameters = {**case.path_parameters, "response_id": response_id}
        return case

    ids = st.just(generated) | st.sampled_from(_EXISTING) if _EXISTING else st.just(generated)
    return ids.map(with_id)


def test_openapi_json_serves_the_document(fuzz_origin: str) -> None:
    answer = httpx.get(f"{fuzz_origin}/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.content == document_bytes()


def test_document_is_valid_openapi() -> None:
    schema.validate()
    assert DOCUMENT["openapi"].startswith("3.1")


@schema.parametrize()
@SETTINGS
def test_api_answers_as_documented(case: Case, fuzz_origin: str) -> None:
    case.call_and_validate(base_url=fuzz_origin, excluded_checks=EXCLUDED, timeout=30)


def test_api_workflows_answer_as_documented(fuzz_origin: str) -> None:
    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": fuzz_origin, "timeout": 30}

        def validate_response(
            self, response: schemathesis.Response, case: Case, **kwargs: Any
        ) -> None:
            case.validate_response(
                response, excluded_checks=EXCLUDED, transport_kwargs=kwargs, recorder=self.recorder
            )

    Workflow.run(settings=settings(SETTINGS, max_examples=15, stateful_step_count=6))


# --- known bugs -------------------------------------------------------------------


def _schema_errors(name: str, instance: Any) -> list[str]:
    registry = Registry().with_resource(
        "urn:tether", Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
    )
    validator = Draft202012Validator(
        {"$ref": f"urn:tether#/components/schemas/{name}"}, registry=registry
    )
    return [error.message for error in validator.iter_errors(instance)]


def test_response_echoes_applied_prompt_cache_options(fuzz_origin: str) -> None:
    body = {"model": "fake", "input": "hi", "prompt_cache_options": {}}
    answer = httpx.post(f"{fuzz_origin}/v1/responses", json=body, timeout=30)
    assert answer.status_code == 200
    assert _schema_errors("Response", answer.json()) == []


@pytest.mark.parametrize(
    "field",
    [
        {"type": "input_text", "prompt_cache_breakpoint": {}},
        {"type": "output_text", "annotations": [{"type": "file_path", "index": 0}]},
        {"type": "output_text", "logprobs": [{}]},
    ],
)
def test_input_part_fields_are_checked(field: dict[str, Any], fuzz_origin: str) -> None:
    role = "user" if field["type"] == "input_text" else "assistant"
    body = {"items": [{"role": role, "content": [{"text": "hi", **field}]}]}
    answer = httpx.post(f"{fuzz_origin}/v1/conversations", json=body, timeout=30)
    assert answer.status_code == 400


@pytest.mark.parametrize(
    "path",
    list(DOCUMENT["paths"]),
)
def test_method_not_allowed_lists_the_path_methods(path: str, fuzz_origin: str) -> None:
    documented = {method.upper() for method in DOCUMENT["paths"][path]}
    documented |= {"HEAD"} if "GET" in documented else set()
    url = fuzz_origin + path.replace("{", "x").replace("}", "")
    answer = httpx.request("PUT", url)
    assert answer.status_code == 405
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == documented
