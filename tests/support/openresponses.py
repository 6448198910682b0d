"""Validate events and Response objects against the Open Responses OpenAPI document.

The document lives next to the repository, in `../shared/spec/openresponses-openapi.json`;
without it the calling test is skipped. Its schemas are JSON Schema 2020-12 (OpenAPI
3.1); `#/components/schemas/…` references resolve inside the document, which is
registered under one URI in a `referencing` registry.

The streaming events the spec covers are those of the `POST /responses` 200
`text/event-stream` `oneOf`, keyed here by their `type` enum. Events outside it (e.g.
Tether's `response.cancelled`) are not validated: `validate_event` returns False.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = (
    Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "openresponses-openapi.json"
)
SPEC_URI = "urn:openresponses:openapi"
SCHEMAS = "#/components/schemas/"


@functools.cache
def _spec() -> dict[str, Any]:
    if not SPEC_PATH.is_file():
        pytest.skip(f"Open Responses spec not found at {SPEC_PATH}; schema checks need it")
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return spec


@functools.cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(_spec(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


def _validator(schema_name: str) -> Draft202012Validator:
    schema = {"$ref": f"{SPEC_URI}{SCHEMAS}{schema_name}"}
    return Draft202012Validator(schema, registry=_registry())


@functools.cache
def event_validators() -> dict[str, Draft202012Validator]:
    """One validator per event `type` of the spec's `text/event-stream` union."""
    post = _spec()["paths"]["/responses"]["post"]
    union = post["responses"]["200"]["content"]["text/event-stream"]["schema"]["oneOf"]
    schemas = _spec()["components"]["schemas"]
    validators: dict[str, Draft202012Validator] = {}
    for ref in union:
        name = ref["$ref"].removeprefix(SCHEMAS)
        for event_type in schemas[name]["properties"]["type"]["enum"]:
            validators[event_type] = _validator(name)
    return validators


@functools.cache
def _response_validator() -> Draft202012Validator:
    return _validator("ResponseResource")


def validate_event(event: dict[str, Any]) -> bool:
    """Assert `event` matches its schema; False (nothing checked) if the spec lacks its type."""
    validator = event_validators().get(event.get("type", ""))
    if validator is None:
        return False
    _assert_valid(validator, event, f"event #{event.get('sequence_number')} {event.get('type')}")
    return True


def validate_response(obj: dict[str, Any]) -> None:
    """Assert `obj` is a valid Open Responses `ResponseResource`."""
    _assert_valid(_response_validator(), obj, f"response {obj.get('id')}")


def _assert_valid(validator: Draft202012Validator, instance: Any, what: str) -> None:
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        path = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise AssertionError(f"{what} does not match the Open Responses spec at {path}: {error}")
