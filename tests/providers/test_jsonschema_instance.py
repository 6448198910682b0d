"""`build_instance` gives a value that validates against the schema, for many schemas.

Every instance is checked with the `jsonschema` package (Draft 2020-12, with its format
checker); instances for pydantic schemas are also parsed back by the model itself.
"""

from __future__ import annotations

import datetime
import enum
import random
import re
import uuid
from typing import Any, Literal, Optional, Union

import jsonschema
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import AnyUrl, BaseModel, Field

from tether.providers.jsonschema_instance import UnsatisfiableSchemaError, build_instance
from tether.providers.regex_sample import shortest_match

Schema = Any


def check(schema: Schema, **options: Any) -> Any:
    """Build an instance, validate it, and check that building again gives the same."""
    value = build_instance(schema, **options)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = [e.message for e in validator.iter_errors(value)]
    assert not errors, (value, errors)
    assert build_instance(schema, **options) == value
    return value


# --- hand-written schemas, one keyword family at a time ---------------------------

SCHEMAS: list[Schema] = [
    True,
    {},
    {"type": "string"},
    {"type": "integer"},
    {"type": "number"},
    {"type": "boolean"},
    {"type": "null"},
    {"type": ["null", "integer"]},
    {"type": ["string", "null"], "minLength": 3},
    {"const": {"a": [1, 2]}},
    {"enum": [3, "x", None]},
    {"type": "string", "enum": [1, "b", "c"]},
    {"type": "string", "minLength": 30},
    {"type": "string", "maxLength": 2},
    {"type": "string", "minLength": 7, "maxLength": 7},
    *({"type": "string", "format": f} for f in ("date-time", "date", "email", "uri", "uuid")),
    {"type": "string", "format": "ipv4"},
    {"type": "integer", "minimum": 5},
    {"type": "integer", "maximum": -3},
    {"type": "integer", "exclusiveMinimum": 5},
    {"type": "integer", "exclusiveMaximum": -5},
    {"type": "integer", "minimum": 7, "maximum": 7},
    {"type": "integer", "multipleOf": 7, "minimum": 8},
    {"type": "integer", "multipleOf": 7, "maximum": -1},
    {"type": "integer", "multipleOf": 2.5, "minimum": 1},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
    {"type": "number", "exclusiveMinimum": 2.5},
    {"type": "number", "minimum": 0.1, "multipleOf": 0.05},
    {"type": "number", "minimum": 1.5, "maximum": 1.5},
    {"type": "number", "exclusiveMaximum": -0.25, "minimum": -0.5},
    {"type": "object"},
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}},
    {
        "type": "object",
        "properties": {"a": False, "b": {"type": "string"}},
        "required": ["b"],
        "additionalProperties": False,
    },
    {"type": "object", "required": ["x", "y"], "additionalProperties": {"type": "boolean"}},
    {
        "type": "object",
        "required": ["n1"],
        "patternProperties": {"^n": {"type": "integer"}},
        "additionalProperties": False,
    },
    {"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}},
    {
        "type": "object",
        "properties": {"a": {}, "b": {}, "c": {}},
        "required": ["c"],
        "maxProperties": 1,
    },
    {"type": "array"},
    {"type": "array", "items": {"type": "integer"}, "minItems": 4, "uniqueItems": True},
    {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "uniqueItems": True},
    {
        "type": "array",
        "items": {"type": "object", "properties": {"n": {"type": "number"}}},
        "minItems": 3,
        "uniqueItems": True,
    },
    {"type": "array", "items": {"type": "string"}, "maxItems": 0},
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
    {"type": "array", "contains": {"type": "integer", "minimum": 3}},
    {"type": "array", "items": {"type": "number", "minimum": 1, "maximum": 2}, "minItems": 3},
    {"anyOf": [{"type": "integer", "minimum": 3, "maximum": 1}, {"type": "string"}]},
    {"oneOf": [{"type": "object", "required": ["k"]}, {"type": "array"}]},
    {"allOf": [{"type": "integer"}, {"minimum": 10}, {"maximum": 20, "multipleOf": 3}]},
    {"allOf": [{"type": ["string", "integer"]}, {"type": ["integer", "null"]}]},
    {"allOf": [{"type": "number"}, {"type": "integer"}]},
    {"allOf": [{"properties": {"a": {"minimum": 2}}}, {"properties": {"a": {"maximum": 4}}}]},
    {"allOf": [{"anyOf": [{"type": "null"}, {"type": "string"}]}, {"anyOf": [{"type": "string"}]}]},
    {"$defs": {"s": {"type": "string", "maxLength": 3}}, "$ref": "#/$defs/s"},
    {"definitions": {"i": {"type": "integer"}}, "items": {"$ref": "#/definitions/i"}},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"const": 4}}, "$ref": "#/$defs/a"},
    {"$defs": {"a/b": {"const": 1}}, "properties": {"x": {"$ref": "#/$defs/a~1b"}}},
    {"type": "object", "properties": {"me": {"$ref": "#"}}},
    {"type": "integer", "exclusiveMinimum": True, "minimum": 3},  # draft 4's boolean form
    {"not": {"type": "object"}, "type": "string"},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=[str(i) for i in range(len(SCHEMAS))])
def test_instance_validates_against_hand_written_schemas(schema: Schema) -> None:
    check(schema)


PATTERNS = [
    r"^[A-Z]{2}-\d{3}$",
    r"^\+?[0-9]{10,15}$",
    r"^#[0-9a-fA-F]{6}$",
    r"^(foo|bar)+baz$",
    r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$",
    r"^(?:https?://)?example\.(com|org)/?$",
    r"^(?P<year>\d{4})-(?P<month>\d\d)$",
    r"^v\d+\.\d+\.\d+(-[a-z]+)?$",
    r"^[a-z_][a-z0-9_]*$",
    r"^(?=.*\d)[a-z\d]{6,}$",
    r"abc",
    r"^\[x\]\{y\}$",
    r"^[\w.-]+$",
    r"^\S{3}\s\S$",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_instance_matches_pattern(pattern: str) -> None:
    value = check({"type": "string", "pattern": pattern})
    assert re.search(pattern, value)


@pytest.mark.parametrize("pattern", PATTERNS[:9])
def test_shortest_match_sketches_common_patterns(pattern: str) -> None:
    assert re.search(pattern, shortest_match(pattern))


def test_instance_strings_take_the_words_in_turn() -> None:
    schema = {
        "type": "object",
        "properties": {k: {"type": "string"} for k in "abc"},
        "required": ["a", "b", "c"],
    }
    assert check(schema, words=["one", "two"]) == {"a": "one", "b": "two", "c": "one"}
    assert check({"type": "string", "minLength": 8}, words=["ab", "cd"]) == "ab cd ab"


def test_instance_prefers_zero_and_non_null() -> None:
    assert check({"type": ["null", "number"]}) == 0
    assert check({"anyOf": [{"type": "null"}, {"type": "boolean"}]}) is None  # first branch
    assert check({"type": "integer", "minimum": -5, "maximum": 5}) == 0


# --- pydantic models, plain and as the openai SDK's strict schemas -----------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    city: str = Field(min_length=2, max_length=40)
    zip_code: str = Field(pattern=r"^\d{5}$")
    country: Literal["FR", "DE", "US"] = "FR"


class Person(BaseModel):
    name: str
    age: int = Field(ge=18, le=130)
    height: float = Field(gt=0.5, lt=2.5)
    nickname: Optional[str] = None  # noqa: UP045 - the anyOf-with-null form is the point
    favourite: Color
    addresses: list[Address]
    tags: list[str] = Field(default_factory=list, max_length=3)
    scores: dict[str, int] = Field(default_factory=dict)
    born: datetime.date
    seen: datetime.datetime
    key: uuid.UUID
    homepage: AnyUrl | None = None


class Node(BaseModel):
    value: int
    children: list[Node]
    parent: Optional[Node] = None  # noqa: UP045


class Tree(BaseModel):
    root: Node
    size: int = Field(multiple_of=5, gt=0)


class Circle(BaseModel):
    kind: Literal["circle"]
    radius: float


class Square(BaseModel):
    kind: Literal["square"]
    side: float


class Drawing(BaseModel):
    shapes: list[Union[Circle, Square]]  # noqa: UP007
    main: Circle | Square = Field(discriminator="kind")
    pair: tuple[int, str]
    unique: set[int]
    maybe_list: list[int] | None


class Expression(BaseModel):
    op: Literal["+", "-"]
    left: Expression | int
    right: Expression | int


MODELS: list[type[BaseModel]] = [Address, Person, Node, Tree, Circle, Drawing, Expression]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_instance_validates_against_pydantic_schemas(model: type[BaseModel]) -> None:
    value = check(model.model_json_schema(), words=["hello", "world"])
    model.model_validate(value)


STRICT_MODELS = [m for m in MODELS if m is not Drawing]  # strict mode has no tuples or sets


@pytest.mark.parametrize("model", STRICT_MODELS, ids=lambda m: m.__name__)
def test_instance_validates_against_openai_strict_schemas(model: type[BaseModel]) -> None:
    schema = to_strict_json_schema(model)
    value = check(schema)
    model.model_validate(value)
    assert all(name in value for name in schema["properties"])  # strict: every property


def test_instance_ends_recursion_with_empty_lists_and_nulls() -> None:
    value = check(to_strict_json_schema(Node))
    assert value == {
        "value": 0,
        "children": [{"value": 0, "children": [], "parent": None}],
        "parent": {"value": 0, "children": [], "parent": None},
    }


# --- random satisfiable schemas ----------------------------------------------------


def random_schema(rng: random.Random, defs: dict[str, Schema], depth: int = 0) -> Schema:
    """A schema that some value satisfies, from a seeded generator; `$ref` targets go
    into `defs`."""
    kinds = ["string", "integer", "number", "boolean", "null", "enum"]
    if depth < 3:
        kinds += ["object", "array", "anyOf", "allOf", "nullable", "ref"]
    kind = rng.choice(kinds)
    if kind == "string":
        low = rng.randint(0, 12)
        schema: dict[str, Any] = {"type": "string", "minLength": low}
        if rng.random() < 0.5:
            schema["maxLength"] = low + rng.randint(0, 5)
        if rng.random() < 0.3:
            schema = {"type": "string", "format": rng.choice(["date", "email", "uuid"])}
        return schema
    if kind in ("integer", "number"):
        low = rng.randint(-50, 50)
        schema = {"type": kind, rng.choice(["minimum", "exclusiveMinimum"]): low}
        schema[rng.choice(["maximum", "exclusiveMaximum"])] = low + rng.randint(7, 60)
        if rng.random() < 0.5:
            schema["multipleOf"] = rng.choice([1, 2, 0.5, 0.25] if kind == "number" else [1, 2, 3])
        return schema
    if kind in ("boolean", "null"):
        return {"type": kind}
    if kind == "enum":
        return {"enum": rng.sample([1, "a", None, True, 2.5, [1], {"k": 1}], 3)}
    if kind == "object":
        names = [f"p{i}" for i in range(rng.randint(0, 4))]
        return {
            "type": "object",
            "properties": {n: random_schema(rng, defs, depth + 1) for n in names},
            "required": [n for n in names if rng.random() < 0.7],
            "additionalProperties": rng.random() < 0.5,
        }
    if kind == "array":
        low = rng.randint(0, 3)
        return {
            "type": "array",
            "items": random_schema(rng, defs, depth + 1),
            "minItems": low,
            "maxItems": low + rng.randint(0, 3),
        }
    if kind == "anyOf":
        return {"anyOf": [random_schema(rng, defs, depth + 1) for _ in range(rng.randint(1, 3))]}
    if kind == "allOf":  # a satisfiable schema with its keywords spread over two parts
        whole = random_schema(rng, defs, depth + 1)
        keys = sorted(whole)  # `additionalProperties` only sees `properties` beside it
        first = {*keys[::2], *({"properties", "additionalProperties"} & set(keys))}
        parts = [{k: whole[k] for k in keys if (k in first) == (i == 0)} for i in (0, 1)]
        return {"allOf": [p | ({"type": whole["type"]} if "type" in whole else {}) for p in parts]}
    if kind == "nullable":
        return {"anyOf": [random_schema(rng, defs, depth + 1), {"type": "null"}]}
    name = f"d{len(defs)}"
    defs[name] = {}
    defs[name] = random_schema(rng, defs, depth + 1)
    return {"$ref": f"#/$defs/{name}"}


@pytest.mark.parametrize("seed", range(300))
def test_instance_validates_against_random_schemas(seed: int) -> None:
    defs: dict[str, Schema] = {}
    schema = random_schema(random.Random(seed), defs)
    check({"$defs": defs, "allOf": [schema]}, words=["x", "yz"])


# --- what cannot be built ------------------------------------------------------------

UNSATISFIABLE: list[tuple[Schema, str]] = [
    (False, "false"),
    ({"type": "integer", "minimum": 5, "maximum": 4}, "no integer lies within the bounds"),
    ({"type": "integer", "multipleOf": 10, "minimum": 1, "maximum": 9}, "no multiple of 10"),
    ({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1}, "within the bounds"),
    ({"enum": []}, "enum"),
    ({"allOf": [{"const": 1}, {"const": 2}]}, "const"),
    ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "type"),
    ({"type": "string", "minLength": 5, "maxLength": 4}, "minLength 5 is more than maxLength 4"),
    ({"type": "string", "pattern": "(?<=x)y\\Z(?!y)"}, "no string that matches"),
    ({"type": "array", "minItems": 3, "maxItems": 2}, "maxItems"),
    ({"type": "array", "items": False, "minItems": 1}, "item 0"),
    ({"type": "object", "required": ["a"], "additionalProperties": False}, "'a'"),
    ({"$ref": "#/$defs/missing"}, "points at nothing"),
    ({"type": "string", "minLength": 10**9}, "minLength 1000000000 is more than"),
    ({"type": "integer", "minimum": "five"}, "malformed"),
    ({"type": "object", "properties": ["a"]}, "malformed"),
    (
        {"$defs": {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{j}"} for j in range(12)] + [False]}
                   for i in range(12)}, "$ref": "#/$defs/d0"},
        "too complex",
    ),
    ({"$ref": "https://example.com/schema"}, "only local"),
    (
        {"$defs": {"n": {"type": "object", "properties": {"n": {"$ref": "#/$defs/n"}},
                         "required": ["n"]}}, "$ref": "#/$defs/n"},
        "refers back to itself",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "message"), UNSATISFIABLE)
def test_instance_that_cannot_be_built_raises_saying_why(schema: Schema, message: str) -> None:
    with pytest.raises(UnsatisfiableSchemaError, match=re.escape(message)):
        build_instance(schema)
