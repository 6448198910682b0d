"""JSON Schema rules for function `parameters` and `text.format` schemas, as pure checks.

* `schema_problem(schema)`: why `schema` is not a valid JSON Schema (draft 2020-12), or
  None.
* `strict_schema_problem(schema)`: why `schema` falls outside the subset OpenAI accepts
  in strict mode (Structured Outputs, `strict: true`), or None. The rules, from
  OpenAI's "Supported schemas" guide:
  - the root is an object schema (`"type": "object"`), not `anyOf`;
  - every object has `"additionalProperties": false` and lists every property in
    `required` (optional fields are written as a union with null);
  - only these keywords: structure (`type`, `properties`, `required`,
    `additionalProperties`, `items`, `anyOf`, `enum`, `const`, `$ref`, `$defs`,
    `definitions`), annotations (`title`, `description`, `default`, `examples`, …) and
    the supported constraints (`pattern`, `format`, `minLength`, `maxLength`,
    `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`,
    `minItems`, `maxItems`). Composition (`allOf`, `oneOf`, `not`, `if`/`then`/`else`,
    `dependentRequired`, `dependentSchemas`) and the other object and array keywords
    (`patternProperties`, `propertyNames`, `uniqueItems`, `contains`, …) are refused;
  - `$ref` points inside the schema (`#` or `#/…`); recursion through it is fine;
  - limits: 10 levels of object nesting, 5,000 object properties, 1,000 enum values,
    120,000 characters of property names, definition names, enum and const strings,
    and 15,000 characters for a string enum of more than 250 values.

A problem is a sentence naming the place in the schema (`at properties.address`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

MAX_JSON_DEPTH = 64
MAX_OBJECT_DEPTH = 10
MAX_PROPERTIES = 5000
MAX_ENUM_VALUES = 1000
MAX_STRING_CHARS = 120_000
LARGE_ENUM, LARGE_ENUM_CHARS = 250, 15_000

STRUCTURE = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "anyOf", "enum"}
    | {"const", "$ref", "$defs", "definitions"}
)
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment"}
    | {"deprecated", "readOnly", "writeOnly"}
)
CONSTRAINTS = frozenset(
    {"pattern", "format", "minLength", "maxLength", "multipleOf", "minimum", "maximum"}
    | {"exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems"}
)
SUPPORTED_KEYWORDS = STRUCTURE | ANNOTATIONS | CONSTRAINTS
_TYPED_BY = ("type", "anyOf", "$ref", "enum", "const")


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why `schema` is not a valid draft 2020-12 JSON Schema, or None."""
    if _json_depth(schema) > MAX_JSON_DEPTH:
        return f"it is nested more than {MAX_JSON_DEPTH} levels deep"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return f"{error.message} {_where(error.path)}"
    except RecursionError:  # the depth guard keeps this rare: a deep stack already
        return "it is nested too deeply"
    return None


def strict_schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why `schema` breaks the strict-mode rules (see the module docstring), or None.

    Assumes `schema_problem(schema)` is None.
    """
    if schema.get("type") != "object":
        return 'the root schema must be an object ("type": "object") in strict mode'
    if "anyOf" in schema:
        return "the root schema must not be 'anyOf' in strict mode"
    walk = _StrictWalk(schema)
    try:
        walk.visit(schema, (), 0)
    except _Problem as problem:
        return str(problem)
    return None


class _Problem(Exception):
    pass


class _StrictWalk:
    """One pass over a schema, counting towards the limits as it goes."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.properties = 0
        self.enum_values = 0
        self.chars = 0

    def visit(self, schema: Any, path: tuple[str | int, ...], depth: int) -> None:
        where = _where(path)
        if not isinstance(schema, dict):
            raise _Problem(f"every schema must be an object in strict mode {where}")
        for keyword in schema:
            if keyword not in SUPPORTED_KEYWORDS:
                raise _Problem(f"'{keyword}' is not permitted in strict mode {where}")
        if not any(keyword in schema for keyword in _TYPED_BY):
            raise _Problem(f"every schema must have a 'type' (or 'anyOf' or '$ref') {where}")
        types = schema.get("type")
        if types == "object" or (isinstance(types, list) and "object" in types):
            self._object(schema, path, depth + 1)
        if isinstance(schema.get("items"), dict):
            self.visit(schema["items"], (*path, "items"), depth)
        for index, variant in enumerate(schema.get("anyOf", ())):
            self.visit(variant, (*path, "anyOf", index), depth)
        if "enum" in schema:
            self._enum(schema["enum"], where)
        if isinstance(schema.get("const"), str):
            self._count_chars([schema["const"]])
        if "$ref" in schema:
            self._ref(schema["$ref"], where)
        for keyword in ("$defs", "definitions"):
            definitions = schema.get(keyword)
            for name, definition in definitions.items() if isinstance(definitions, dict) else ():
                self._count_chars([name])
                self.visit(definition, (*path, keyword, name), 0)

    def _object(self, schema: dict[str, Any], path: tuple[str | int, ...], depth: int) -> None:
        where = _where(path)
        if depth > MAX_OBJECT_DEPTH:
            raise _Problem(
                f"objects may be nested at most {MAX_OBJECT_DEPTH} levels deep in strict mode; "
                f"this one is at level {depth} {where}"
            )
        if schema.get("additionalProperties") is not False:
            raise _Problem(
                f"'additionalProperties' must be false for every object in strict mode {where}"
            )
        properties: dict[str, Any] = schema.get("properties", {})
        required = schema.get("required", [])
        missing = [name for name in properties if name not in required]
        extra = [name for name in required if name not in properties]
        if missing or extra:
            detail = f"missing {_names(missing)}" if missing else f"extra {_names(extra)}"
            raise _Problem(
                f"'required' must list every key in 'properties' (and no other) in strict "
                f"mode; {detail} {where}"
            )
        self.properties += len(properties)
        if self.properties > MAX_PROPERTIES:
            raise _Problem(f"a strict schema may have at most {MAX_PROPERTIES} object properties")
        self._count_chars(properties)
        for name, subschema in properties.items():
            self.visit(subschema, (*path, "properties", name), depth)

    def _enum(self, values: list[Any], where: str) -> None:
        self.enum_values += len(values)
        if self.enum_values > MAX_ENUM_VALUES:
            raise _Problem(f"a strict schema may have at most {MAX_ENUM_VALUES} enum values")
        strings = [value for value in values if isinstance(value, str)]
        if len(strings) > LARGE_ENUM and sum(map(len, strings)) > LARGE_ENUM_CHARS:
            raise _Problem(
                f"an enum of more than {LARGE_ENUM} strings may have at most "
                f"{LARGE_ENUM_CHARS} characters in all in strict mode {where}"
            )
        self._count_chars(strings)

    def _ref(self, ref: Any, where: str) -> None:
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise _Problem(
                f"'$ref' must point inside the schema ('#' or '#/…') in strict mode {where}"
            )
        target: Any = self.root
        for token in ref[2:].split("/") if ref != "#" else ():
            key = token.replace("~1", "/").replace("~0", "~")
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            raise _Problem(f"'$ref' {ref!r} does not point to a schema {where}")

    def _count_chars(self, strings: Iterable[str]) -> None:
        self.chars += sum(map(len, strings))
        if self.chars > MAX_STRING_CHARS:
            raise _Problem(
                f"a strict schema may have at most {MAX_STRING_CHARS} characters of property "
                "names, definition names, enum values and const values"
            )


def _where(path: Iterable[str | int]) -> str:
    """`at properties.address.items`, `at anyOf[1]`, or `at the root`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"at {text}" if text else "at the root"


def _names(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _json_depth(value: Any) -> int:
    """How deeply `value` nests arrays and objects, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((child, depth + 1) for child in node)
    return deepest
