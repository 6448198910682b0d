"""Grammars (llama.cpp GBNF) that hold a local model to the output a request demands.

- `text.format` json_schema: JSON valid against the schema; json_object: any JSON
  object. The schema is compiled by llama-cpp-python's converter, with a stricter
  string character rule (no raw control characters, so the text always parses).
- function calls (see `llama_prompt` for the format): with `tool_choice` `required`
  or a named function, the output is exactly one call of an allowed function whose
  arguments follow that function's `parameters`. With `auto`, the grammar is lazy: the
  model writes free text, and the grammar takes hold from the moment it writes
  `<tool_call>` — or, when a JSON format is asked for too, the output is either the
  JSON text or one call.

`output_grammar` raises `ProviderError` (`invalid_prompt`) for a schema the converter
cannot compile. Schema keywords the converter does not enforce (`minimum`,
`maximum`, `multipleOf`, …) are not guaranteed; the runner's strict check reports
such a violation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
from llama_cpp.llama_grammar import PRIMITIVE_RULES, SchemaConverter

from tether.domain.types import JSONObject
from tether.errors import ProviderError
from tether.providers.llama_prompt import CALL_ARGUMENTS, CALL_HEAD, CALL_OPEN, CALL_TAIL, ToolPlan

# What starts a lazy call grammar: the whole text so far must match; the grammar
# applies from the first group on.
CALL_TRIGGER = r"[\s\S]*?(" + re.escape(CALL_OPEN) + r")[\s\S]*"
# JSON string characters: no quote, backslash or raw control character.
STRING_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
# A rule body's tokens: literals, character classes, repetition counts, names, the rest.
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{[0-9, ]*\}|[A-Za-z0-9-]+|.', re.S)


@dataclass(frozen=True, slots=True)
class Grammar:
    """GBNF text whose start rule is `root`. `lazy`: it applies only once the output
    matches `CALL_TRIGGER`."""

    text: str
    lazy: bool = False


def output_grammar(text_format: JSONObject | None, tools: ToolPlan) -> Grammar | None:
    """The grammar for a request's format and tool plan; None when output is free."""
    rules: dict[str, str] = {}
    text_root = _text_rules(text_format, rules)
    call_root = _call_rules(tools.callable, rules) if tools.mode != "none" else None
    if call_root is not None and tools.mode == "required":
        rules["root"] = call_root
    elif call_root is not None and text_root is not None:
        rules["root"] = f"{text_root} | {call_root}"
    elif call_root is not None:
        rules["root"] = call_root
        return Grammar(_format(rules), lazy=True)
    elif text_root is not None:
        rules["root"] = text_root
    else:
        return None
    return Grammar(_format(rules))


def schema_rules(schema: JSONObject, prefix: str, rules: dict[str, str]) -> str:
    """Adds the rules of JSON valid against `schema` to `rules`, each name starting with
    `prefix`; returns the name of its start rule. Raises `ProviderError`."""
    converter = SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    try:
        resolved = converter.resolve_refs(orjson.loads(orjson.dumps(schema)), prefix)
        converter.visit(resolved, "")  # type: ignore[no-untyped-call]
    except (AssertionError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProviderError(
            f"cannot compile this JSON schema into a grammar ({type(exc).__name__}: {exc}); "
            "simplify the schema",
            code="invalid_prompt",
        ) from None
    produced: dict[str, str] = dict(converter._rules)
    if produced.get("char") == PRIMITIVE_RULES["char"].content:
        produced["char"] = STRING_CHAR
    names = {name: f"{prefix}-{name}" for name in produced}
    for name, body in produced.items():
        rules[names[name]] = "".join(names.get(token, token) for token in _TOKEN.findall(body))
    return names["root"]


def literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def _text_rules(text_format: JSONObject | None, rules: dict[str, str]) -> str | None:
    kind = (text_format or {}).get("type")
    if kind == "json_schema":
        assert text_format is not None
        return schema_rules(text_format.get("schema") or {}, "text", rules)
    if kind == "json_object":
        return schema_rules({"type": "object"}, "text", rules)
    return None


def _call_rules(tools: tuple[JSONObject, ...], rules: dict[str, str]) -> str:
    """Rules of one call of one of `tools`; returns the call's rule body."""
    choices = []
    for index, tool in enumerate(tools):
        parameters = tool.get("parameters")
        arguments = schema_rules(parameters, f"fn{index}", rules) if parameters else '"{}"'
        rules[f"fn{index}"] = f"{literal(str(tool['name']) + CALL_ARGUMENTS)} {arguments}"
        choices.append(f"fn{index}")
    return f"{literal(CALL_HEAD)} ({' | '.join(choices)}) {literal(CALL_TAIL)}"


def _format(rules: dict[str, str]) -> str:
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"
