"""Build one deterministic JSON value that validates against a JSON Schema.

The fake model uses it to write tool-call arguments and structured (`json_schema`)
output, so that apps and tests can exercise those paths without a real model. The
same schema and words always give the same value. Pure: no I/O, no randomness.

What it understands:
- `type` (one name or a list; `null` is chosen only when nothing else works; without
  `type` the other keywords tell, else a string), `const`, `enum` (the first value of
  an allowed type), and `true` / `false` / `{}` schemas.
- `$ref` to a local JSON pointer (`#`, `#/$defs/…`, `#/definitions/…`) with sibling
  keywords merged in; `allOf` (merged into one schema); `anyOf` and `oneOf` (the first
  branch that builds). A `$ref` already being expanded further up counts as
  unbuildable, so recursive models take their way out: the `null` branch, an empty
  array, or leaving out an optional property.
- Objects: every property of `properties` (strict schemas require all; an optional one
  that cannot be built is left out), `required` names missing from `properties`
  (built from `patternProperties` / `additionalProperties`), `minProperties` (adds
  `key1`, `key2`, …), `maxProperties` (drops optional properties from the end).
- Arrays: `max(minItems, 1)` items, at least one per `prefixItems` (or list-valued
  `items`) entry, capped by `maxItems`; the first item also meets `contains`; item `i`
  (and its properties) picks the `i`-th enum value / number / boolean, so
  `uniqueItems` usually holds.
- Strings: the next word of `words` (they are used in turn); `minLength` pads with more
  words, `maxLength` cuts. `format` `date-time`, `date`, `time`, `email`, `uri`, `uuid`,
  `hostname`, `ipv4`, `ipv6`, `duration` give a fixed sample of that format instead.
- Numbers: 0 when the bounds allow, else the allowed value nearest 0 under `minimum` /
  `maximum` / `exclusiveMinimum` / `exclusiveMaximum` (numbers, or draft-4 booleans)
  and `multipleOf`. Booleans are `true`.

Limits: `pattern` is best effort — the pattern's shortest match as sketched by
`tether.providers.regex_sample`, then some stock strings, are tried; `pattern`
together with `minLength` may fail. `const`/`enum` values are
used as given; `oneOf` is right only when its branches do not overlap; `not`,
`if`/`then`/`else`, `dependent*`, `propertyNames` and remote `$ref`s are ignored.
When nothing fits — or the schema is malformed, nests deeper than `MAX_DEPTH`, needs
more than `MAX_STEPS` subschemas tried or a size beyond `MAX_SIZE` —
`UnsatisfiableSchemaError` says which part of the schema failed.

Sections: the builder (`build_instance`, `_Builder`) and its helpers; merging
schemas (`merge`); numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from itertools import zip_longest

import orjson

from tether.domain.types import JSON, JSONObject
from tether.errors import TetherError
from tether.providers.regex_sample import shortest_match

DEFAULT_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet")
MAX_DEPTH = 100  # nested subschemas before giving up; real schemas stay far below
MAX_STEPS = 20_000  # subschemas built in all (anyOf branches tried included)
MAX_SIZE = 100_000  # the largest minLength / minItems / minProperties built
FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "duration": "P1D",
}
PATTERN_CANDIDATES = (
    *("", "a", "A", "0", "1", "_", "-", "a1", "A1", "abc", "ABC", "123", "a-b", "a_b"),
    *(c * n for c in "aA0" for n in range(2, 9)),
    *FORMATS.values(),
)
_HINTS = (
    ("object", ("properties", "required", "additionalProperties", "patternProperties")),
    ("array", ("items", "prefixItems", "minItems", "maxItems", "contains", "uniqueItems")),
    ("string", ("minLength", "maxLength", "pattern", "format")),
    ("number", ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")),
)
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


class UnsatisfiableSchemaError(TetherError):
    """No value could be built for the schema; the message says which part failed."""


def build_instance(
    schema: JSON, *, words: Sequence[str] = DEFAULT_WORDS, root: JSON | None = None
) -> JSON:
    """A value valid against `schema`. `words` give the text of strings, in turn;
    `root` is the document `$ref`s point into (default: `schema` itself).

    Raises `UnsatisfiableSchemaError` when no value can be built."""
    builder = _Builder(schema if root is None else root, [w for w in words if w])
    try:
        return builder.build(schema, frozenset(), 0)
    except _TooComplexError as exc:
        raise UnsatisfiableSchemaError(str(exc)) from None
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        # a keyword of the wrong JSON type, e.g. `"minimum": "five"`
        raise UnsatisfiableSchemaError(f"the schema is malformed ({exc!r})") from None


class _TooComplexError(Exception):
    """Stops the whole build at once (no other branch is tried)."""


class _Builder:
    def __init__(self, root: JSON, words: list[str]) -> None:
        self.root = root
        self.words = words or list(DEFAULT_WORDS)
        self.used = 0
        self.steps = 0

    def word(self) -> str:
        word = self.words[self.used % len(self.words)]
        self.used += 1
        return word

    def build(self, schema: JSON, refs: frozenset[str], depth: int, variant: int = 0) -> JSON:
        """`refs` are the `$ref`s being expanded on the way down (recursion guard);
        `variant` is the item's index in its array (to make items differ)."""
        self.steps += 1
        if depth > MAX_DEPTH or self.steps > MAX_STEPS:
            raise _TooComplexError(
                f"the schema is too complex (more than {MAX_DEPTH} levels deep or "
                f"{MAX_STEPS} subschemas tried)"
            )
        if schema is True:
            schema = {}
        if schema is False:
            raise UnsatisfiableSchemaError("a `false` schema allows no value")
        if not isinstance(schema, dict):
            raise UnsatisfiableSchemaError(f"{schema!r} is not a schema")
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref in refs:
                raise UnsatisfiableSchemaError(f"{ref} refers back to itself")
            merged = merge(self.resolve(ref), _without(schema, "$ref"))
            return self.build(merged, refs | {ref}, depth + 1, variant)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                rest, failures = _without(schema, key), []
                for branch in schema[key]:
                    try:
                        return self.build(merge(rest, branch), refs, depth + 1, variant)
                    except UnsatisfiableSchemaError as exc:
                        failures.append(str(exc))
                raise UnsatisfiableSchemaError(_brief(f"no branch of {key} fits", failures))
        if "allOf" in schema:
            merged = _without(schema, "allOf")
            for part in schema["allOf"]:
                merged = merge(merged, part)
            return self.build(merged, refs, depth + 1, variant)
        return self.build_plain(schema, refs, depth, variant)

    def build_plain(
        self, schema: JSONObject, refs: frozenset[str], depth: int, variant: int
    ) -> JSON:
        """A schema without combinators."""
        types = _types(schema)
        if "const" in schema or "enum" in schema:
            options = [schema["const"]] if "const" in schema else list(schema["enum"])
            options = [v for v in options if "enum" not in schema or v in schema["enum"]]
            if "type" in schema:
                options = [v for v in options if any(_is_type(v, t) for t in types)]
            if not options:
                raise UnsatisfiableSchemaError("no value of const/enum fits the rest of the schema")
            return options[variant % len(options)]
        failures = []
        for name in sorted(types, key=lambda t: t == "null"):
            try:
                return self.build_type(name, schema, refs, depth, variant)
            except UnsatisfiableSchemaError as exc:
                failures.append(f"{name}: {exc}")
        raise UnsatisfiableSchemaError(_brief("no type fits", failures))

    def build_type(
        self, name: str, schema: JSONObject, refs: frozenset[str], depth: int, variant: int
    ) -> JSON:
        if name == "object":
            return self.build_object(schema, refs, depth, variant)
        if name == "array":
            return self.build_array(schema, refs, depth)
        if name == "string":
            return self.build_string(schema)
        if name in ("integer", "number"):
            return _number(schema, integer=name == "integer", variant=variant)
        if name == "boolean":
            return variant % 2 == 0
        if name == "null":
            return None
        raise UnsatisfiableSchemaError(f"unknown type {name!r}")

    def resolve(self, ref: JSON) -> JSON:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnsatisfiableSchemaError(f"only local $refs (#/…) are understood, not {ref!r}")
        target = self.root
        for token in filter(None, ref[1:].split("/")):
            key = token.replace("~1", "/").replace("~0", "~")
            try:
                target = target[int(key)] if isinstance(target, list) else target[key]
            except (KeyError, IndexError, ValueError, TypeError):
                raise UnsatisfiableSchemaError(f"$ref {ref} points at nothing") from None
        return target

    def build_object(
        self, schema: JSONObject, refs: frozenset[str], depth: int, variant: int
    ) -> JSONObject:
        required = list(schema.get("required") or [])
        value: JSONObject = {}
        for name, sub in (schema.get("properties") or {}).items():
            try:
                value[name] = self.build(sub, refs, depth + 1, variant)
            except UnsatisfiableSchemaError as exc:
                if name in required:
                    raise UnsatisfiableSchemaError(f"property {name!r}: {exc}") from None
        wanted = _size(schema, "minProperties")
        for name in [*required, *(f"key{i}" for i in range(1, wanted + 1))]:
            if name in value or (name not in required and len(value) >= wanted):
                continue
            sub = _extra_schema(schema, name)
            if sub is False:
                raise UnsatisfiableSchemaError(f"property {name!r} is needed but not allowed")
            value[name] = self.build(sub, refs, depth + 1, variant)
        limit = schema.get("maxProperties")
        if limit is not None:
            for name in reversed(list(value)):
                if len(value) > limit and name not in required:
                    del value[name]
            if len(value) > limit:
                raise UnsatisfiableSchemaError(f"more properties are required than {limit}")
        return value

    def build_array(self, schema: JSONObject, refs: frozenset[str], depth: int) -> list[JSON]:
        prefix, items = schema.get("prefixItems") or [], schema.get("items", True)
        if isinstance(items, list):
            prefix, items = items, schema.get("additionalItems", True)
        low, high = _size(schema, "minItems"), schema.get("maxItems")
        count = max(low, len(prefix), 0 if items is False else 1)
        count = count if high is None else min(count, high)
        if count < low:
            raise UnsatisfiableSchemaError(f"minItems {low} is more than maxItems {high}")
        must_contain = "contains" in schema and schema.get("minContains", 1) > 0
        value: list[JSON] = []
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else items
            if index == 0 and "contains" in schema:
                sub = merge(sub, schema["contains"])
            try:
                value.append(self.build(sub, refs, depth + 1, variant=index))
            except UnsatisfiableSchemaError as exc:
                if index < low or (index == 0 and must_contain):
                    raise UnsatisfiableSchemaError(f"item {index}: {exc}") from None
                break
        if schema.get("uniqueItems") and len({_key(v) for v in value}) < len(value):
            raise UnsatisfiableSchemaError("uniqueItems: the items came out equal")
        return value

    def build_string(self, schema: JSONObject) -> str:
        low, high = _size(schema, "minLength"), schema.get("maxLength")
        if high is not None and low > high:
            raise UnsatisfiableSchemaError(f"minLength {low} is more than maxLength {high}")
        patterns = _as_list(schema.get("pattern"))
        candidates = [FORMATS.get(schema.get("format", "")) or self.word()]
        if patterns:
            candidates += [shortest_match(p) for p in patterns] + list(PATTERN_CANDIDATES)
        for candidate in candidates:
            text = self.fit(candidate, low, high)
            if all(_matches(p, text) for p in patterns):
                return text
        raise UnsatisfiableSchemaError(f"found no string that matches {patterns} (best effort)")

    def fit(self, text: str, low: int, high: int | None) -> str:
        """`text` padded with words to `low` characters and cut to `high`."""
        parts, length = ([text] if text else []), len(text)
        while length < low:
            parts.append(self.word())
            length += len(parts[-1]) + 1
        text = " ".join(parts)
        return text if high is None else text[:high]


def _brief(summary: str, failures: list[str], limit: int = 400) -> str:
    """`summary (failure; failure; …)`, cut to about `limit` characters."""
    text = f"{summary} ({'; '.join(failures)})" if failures else summary
    return text if len(text) <= limit else text[: limit - 2] + "…)"


def _size(schema: JSONObject, key: str) -> int:
    size: int = schema.get(key, 0)
    if size > MAX_SIZE:
        raise UnsatisfiableSchemaError(f"{key} {size} is more than the {MAX_SIZE} built here")
    return size


def _types(schema: JSONObject) -> list[str]:
    if "type" in schema:
        return _as_list(schema["type"])
    for name, keys in _HINTS:
        if any(key in schema for key in keys):
            return [name]
    return ["string"]  # anything goes; a word is as good as any value


def _is_type(value: JSON, name: str) -> bool:
    if isinstance(value, bool):
        return name == "boolean"
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    kinds = {"string": str, "number": int | float, "object": dict, "array": list}
    return value is None if name == "null" else isinstance(value, kinds.get(name, ()))


def _extra_schema(schema: JSONObject, name: str) -> JSON:
    """The schema of a property not in `properties`."""
    for pattern, sub in (schema.get("patternProperties") or {}).items():
        if _matches(pattern, name):
            return sub
    return schema.get("additionalProperties", True)


def _matches(pattern: str, text: str) -> bool:
    """JSON Schema patterns are unanchored (ECMA-262 `test`); Python's `re` stands in."""
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _key(value: JSON) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _without(schema: JSONObject, key: str) -> JSONObject:
    return {k: v for k, v in schema.items() if k != key}


def _as_list(value: JSON) -> list[JSON]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# --- merging schemas -------------------------------------------------------------


def merge(a: JSON, b: JSON) -> JSON:
    """One schema asking for what both `a` and `b` ask for (best effort). A second
    `$ref`/`anyOf`/`oneOf` moves into `allOf`; a second `pattern` is kept in a list."""
    if a is True or a == {}:
        return b
    if b is True or b == {}:
        return a
    if a is False or b is False:
        return False
    merged = dict(a)
    for key, value in b.items():
        if key not in merged:
            merged[key] = value
        elif key in ("$ref", "anyOf", "oneOf") and merged[key] != value:
            merged["allOf"] = [*merged.get("allOf", []), {key: value}]
        elif key == "const" and merged[key] != value:
            merged["enum"] = []  # two different consts: nothing fits
        else:
            merged[key] = _merge_keyword(key, merged[key], value)
    return merged


def _merge_keyword(key: str, a: JSON, b: JSON) -> JSON:
    if key == "type":
        return _intersect_types(_as_list(a), _as_list(b))
    if key == "pattern":
        return list(dict.fromkeys(_as_list(a) + _as_list(b)))
    if key == "allOf":
        return [*a, *b]
    if key == "prefixItems":
        return [merge(x, y) for x, y in zip_longest(a, b, fillvalue=True)]
    if key == "required":
        return list(dict.fromkeys([*a, *b]))
    if key == "properties":
        return {**a, **b, **{n: {"allOf": [a[n], b[n]]} for n in a if n in b}}
    if key in ("items", "additionalProperties", "contains"):
        return merge(a, b)
    if key == "enum":
        return [v for v in a if v in b]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if numbers and key == "multipleOf":
        x, y = Fraction(str(a)), Fraction(str(b))
        lcm = Fraction(math.lcm(x.numerator, y.numerator), math.gcd(x.denominator, y.denominator))
        return int(lcm) if lcm.denominator == 1 else float(lcm)
    if numbers and key in _LOWER:
        return max(a, b)
    if numbers and key in _UPPER:
        return min(a, b)
    return a


def _intersect_types(a: list[str], b: list[str]) -> list[str]:
    both = [t for t in a if t in b]
    if ("integer" in a and "number" in b) or ("number" in a and "integer" in b):
        both.append("integer")
    return list(dict.fromkeys(both))


# --- numbers ---------------------------------------------------------------------


def _number(schema: JSONObject, *, integer: bool, variant: int) -> int | float:
    """The allowed value nearest 0; item `variant` of an array moves `variant` steps
    away from it when the bounds allow."""
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum", max)
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum", min)
    step = Fraction(str(schema["multipleOf"])) if "multipleOf" in schema else None
    if integer:  # integral multiples of p/q (lowest terms) are the multiples of p
        step = Fraction(step.numerator if step is not None else 1)

    def allowed(x: Fraction) -> bool:
        above = low is None or x > low or (x == low and not low_open)
        return above and (high is None or x < high or (x == high and not high_open))

    if step is None:
        value = _nearest_zero(low, low_open, high, high_open)
        step = Fraction(1)
    else:
        first = None if low is None else math.ceil(low / step)
        first = first + 1 if first is not None and not allowed(first * step) else first
        last = None if high is None else math.floor(high / step)
        last = last - 1 if last is not None and not allowed(last * step) else last
        if first is not None and last is not None and first > last:
            what = f"multiple of {schema['multipleOf']}" if "multipleOf" in schema else "integer"
            raise UnsatisfiableSchemaError(f"no {what} lies within the bounds")
        k = 0 if first is None or first <= 0 else first
        value = (k if last is None or k <= last else last) * step
    for moved in (value + variant * step, value - variant * step):
        if allowed(moved):
            value = moved
            break
    if not allowed(value):
        raise UnsatisfiableSchemaError("no number lies within the bounds")
    return int(value) if integer or value.denominator == 1 else float(value)


def _nearest_zero(
    low: Fraction | None, low_open: bool, high: Fraction | None, high_open: bool
) -> Fraction:
    if low is not None and (low > 0 or (low == 0 and low_open)):
        if not low_open:
            return low
        return low + 1 if high is None or low + 1 < high else (low + high) / 2
    if high is not None and (high < 0 or (high == 0 and high_open)):
        if not high_open:
            return high
        return high - 1 if low is None or high - 1 > low else (low + high) / 2
    return Fraction(0)


def _bound(
    schema: JSONObject, closed: str, opened: str, tighter: Callable[[Fraction, Fraction], Fraction]
) -> tuple[Fraction | None, bool]:
    """The tighter of a closed and an open bound, and whether it is open. Draft 4's
    boolean `exclusiveMinimum`/`exclusiveMaximum` make the closed bound open."""
    bound = Fraction(str(schema[closed])) if closed in schema else None
    flag = schema.get(opened)
    if flag is None or isinstance(flag, bool):
        return bound, bool(flag) and bound is not None
    other = Fraction(str(flag))
    if bound is None or tighter(bound, other) == other:
        return other, True
    return bound, False
