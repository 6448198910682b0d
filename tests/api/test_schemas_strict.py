"""The JSON Schema rules of `tether.api.schemas.strict_schema`."""

from __future__ import annotations

import datetime
import enum
from typing import Any, Literal

import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from tether.api.schemas import schema_problem, strict_schema_problem
from tether.api.schemas.strict_schema import (
    MAX_ENUM_VALUES,
    MAX_OBJECT_DEPTH,
    MAX_PROPERTIES,
)


def obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A strict object schema of `properties`."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


STRING = {"type": "string"}


# -- ordinary pydantic models, as the openai SDK sends them -------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    city: str = Field(description="City name")
    zip: str | None = None


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Person(BaseModel):
    name: str = Field(min_length=1, max_length=40, pattern="^[A-Z]")
    age: int = Field(ge=0, le=150)
    score: float = 1.5
    color: Color
    kind: Literal["a", "b"]
    one: Literal["x"]
    address: Address
    addresses: list[Address]
    tags: list[str] = Field(min_length=1, max_length=3)
    born: datetime.date
    seen: datetime.datetime | None = None
    number_or_text: int | str
    tree: Node
    maybe_address: Address | None = None


@pytest.mark.parametrize("model", [Person, Node, Address])
def test_strict_pydantic_models_pass(model: type[BaseModel]) -> None:
    schema = to_strict_json_schema(model)
    assert schema_problem(schema) is None
    assert strict_schema_problem(schema) is None


class Bag(BaseModel):
    counts: dict[str, int]


def test_strict_pydantic_dict_field_fails_as_on_openai() -> None:
    problem = strict_schema_problem(to_strict_json_schema(Bag))
    assert problem == (
        "'additionalProperties' must be false for every object in strict mode at properties.counts"
    )


# -- validity --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "phrase"),
    [
        ({"type": "thing"}, "at type"),
        ({"type": "object", "properties": {"a": {"minimum": "0"}}}, "at properties.a.minimum"),
        ({"required": [1]}, "at required[0]"),
        ({"items": [STRING]}, "at items"),
    ],
)
def test_schema_problem_names_the_place(schema: dict[str, Any], phrase: str) -> None:
    problem = schema_problem(schema)
    assert problem is not None
    assert problem.endswith(phrase)


def arrays(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = STRING
    for _ in range(levels - 1):
        schema = {"type": "array", "items": schema}
    return schema


def test_schema_problem_refuses_very_deep_schemas() -> None:
    assert schema_problem(arrays(64)) is None  # deep, but checked without recursion errors
    assert schema_problem(arrays(65)) == "it is nested more than 64 levels deep"


@pytest.mark.parametrize("schema", [{}, {"type": "object"}, {"anyOf": [STRING, {"type": "null"}]}])
def test_schema_problem_accepts_valid_schemas(schema: dict[str, Any]) -> None:
    assert schema_problem(schema) is None


# -- strict rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        obj({}),
        obj({"a": {"type": ["string", "null"], "pattern": "^a", "format": "email"}}),
        obj({"n": {"type": "number", "minimum": 0, "exclusiveMaximum": 5, "multipleOf": 0.5}}),
        obj({"list": {"type": "array", "items": STRING, "minItems": 1, "maxItems": 4}}),
        obj({"e": {"enum": ["a", 1, None]}, "c": {"const": "x"}, "r": {"$ref": "#/$defs/D"}},
            **{"$defs": {"D": obj({"d": {"$ref": "#"}})}}),
        obj({"u": {"anyOf": [obj({"x": STRING}), {"type": "null"}]}}, title="T",
            description="D", **{"$schema": "https://json-schema.org/draft/2020-12/schema"}),
        obj({"legacy": {"$ref": "#/definitions/L"}}, definitions={"L": STRING}),
    ],
)  # fmt: skip
def test_strict_schema_accepts_the_supported_subset(schema: dict[str, Any]) -> None:
    assert schema_problem(schema) is None
    assert strict_schema_problem(schema) is None


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "array", "items": STRING},
         'the root schema must be an object ("type": "object") in strict mode'),
        ({"anyOf": [obj({}), obj({"a": STRING})]},
         'the root schema must be an object ("type": "object") in strict mode'),
        ({**obj({}), "anyOf": [obj({})]}, "the root schema must not be 'anyOf' in strict mode"),
        ({"type": "object", "properties": {}},
         "'additionalProperties' must be false for every object in strict mode at the root"),
        (obj({"address": {"type": "object", "properties": {"x": STRING}, "required": ["x"]}}),
         "'additionalProperties' must be false for every object in strict mode at "
         "properties.address"),
        (obj({"a": {"type": ["object", "null"], "additionalProperties": True}}),
         "'additionalProperties' must be false for every object in strict mode at properties.a"),
        ({**obj({"a": STRING, "b": STRING}), "required": ["a"]},
         "'required' must list every key in 'properties' (and no other) in strict mode; "
         "missing 'b' at the root"),
        ({**obj({"a": STRING}), "required": ["a", "z"]}, "extra 'z' at the root"),
        (obj({"a": {"type": "string", "format": "date", "default": "x", "oneOf": [STRING]}}),
         "'oneOf' is not permitted in strict mode at properties.a"),
        (obj({"a": {"allOf": [STRING]}}), "'allOf' is not permitted in strict mode"),
        (obj({"a": {"type": "array", "items": STRING, "uniqueItems": True}}),
         "'uniqueItems' is not permitted in strict mode at properties.a"),
        (obj({"a": {"type": "array", "items": {"not": STRING}}}),
         "'not' is not permitted in strict mode at properties.a.items"),
        ({**obj({}), "patternProperties": {"^x": STRING}},
         "'patternProperties' is not permitted in strict mode at the root"),
        (obj({"a": {"anyOf": [STRING, {"if": STRING}]}}),
         "'if' is not permitted in strict mode at properties.a.anyOf[1]"),
        (obj({"a": {"description": "anything"}}),
         "every schema must have a 'type' (or 'anyOf' or '$ref') at properties.a"),
        (obj({"a": True}), "every schema must be an object in strict mode at properties.a"),
        (obj({"a": {"$ref": "https://example.com/s.json"}}),
         "'$ref' must point inside the schema ('#' or '#/…') in strict mode at properties.a"),
        (obj({"a": {"$ref": "#/$defs/Missing"}}),
         "'$ref' '#/$defs/Missing' does not point to a schema at properties.a"),
        (obj({}, **{"$defs": {"D": {"type": "object", "properties": {}}}}),
         "'additionalProperties' must be false for every object in strict mode at $defs.D"),
    ],
)  # fmt: skip
def test_strict_schema_problem_says_what_is_wrong(schema: dict[str, Any], problem: str) -> None:
    assert schema_problem(schema) is None
    found = strict_schema_problem(schema)
    assert found is not None
    assert problem in found


def nested(levels: int) -> dict[str, Any]:
    schema = obj({"leaf": STRING})
    for _ in range(levels - 1):
        schema = obj({"child": schema})
    return schema


def test_strict_schema_nesting_limit() -> None:
    assert strict_schema_problem(nested(MAX_OBJECT_DEPTH)) is None
    problem = strict_schema_problem(nested(MAX_OBJECT_DEPTH + 1))
    assert problem is not None
    assert "objects may be nested at most 10 levels deep in strict mode" in problem


def test_strict_schema_property_limit() -> None:
    per_object = 1000
    group = obj({f"p{i}": STRING for i in range(per_object - 1)})
    fits = obj({f"g{i}": group for i in range(MAX_PROPERTIES // per_object)})
    assert strict_schema_problem(fits) is None
    too_many = obj({f"g{i}": group for i in range(MAX_PROPERTIES // per_object + 1)})
    assert strict_schema_problem(too_many) == (
        "a strict schema may have at most 5000 object properties"
    )


def test_strict_schema_enum_limits() -> None:
    values = [f"v{i}" for i in range(MAX_ENUM_VALUES)]
    assert strict_schema_problem(obj({"e": {"enum": values}})) is None
    problem = strict_schema_problem(obj({"e": {"enum": values}, "f": {"enum": ["x"]}}))
    assert problem == "a strict schema may have at most 1000 enum values"
    long_values = [f"{i:0>60}" for i in range(251)]  # 251 strings, 15,060 characters
    problem = strict_schema_problem(obj({"e": {"type": "string", "enum": long_values}}))
    assert problem is not None
    assert "more than 250 strings may have at most 15000 characters" in problem
    assert strict_schema_problem(obj({"e": {"enum": long_values[:250]}})) is None


def test_strict_schema_total_string_limit() -> None:
    big = "x" * 60_000
    assert strict_schema_problem(obj({"a": {"const": big}})) is None
    problem = strict_schema_problem(obj({"a": {"const": big}, "b": {"enum": [big, "y"]}}))
    assert problem is not None
    assert "at most 120000 characters" in problem
