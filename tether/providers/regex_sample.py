"""A short string that a regular expression matches, sketched from the pattern.

`tether.providers.jsonschema_instance` uses it for JSON Schema `pattern`s. It knows a
common subset of regex syntax — literals, `.`, classes (`[a-z]`, `[^…]`), escapes
(`\\d`, `\\w`, `\\s`, `\\.`), anchors, groups (plain, non-capturing, named,
lookarounds skipped), alternation (the first alternative) and quantifiers (their
minimum) — and is best effort: the caller checks the result against the pattern.
"""

from __future__ import annotations

import re

_ESCAPES = {"d": "0", "w": "a", "s": " ", "D": "a", "W": "-", "S": "a", "n": "\n", "t": "\t"}
_CLASS_CANDIDATES = "a0A_-. @"


def shortest_match(pattern: str) -> str:
    """The shortest string `pattern` matches, as far as the sketch understands it;
    "" when the pattern is beyond it."""
    try:
        return _sequence(pattern, 0)[0]
    except (IndexError, ValueError):
        return ""


def _sequence(p: str, i: int) -> tuple[str, int]:
    """From `i` to the closing `)` or the end; only the first alternative counts."""
    out: list[str] = []
    while i < len(p) and p[i] != ")":
        if p[i] == "|":
            return "".join(out), _skip_alternatives(p, i)
        atom, i = _atom(p, i)
        times, i = _quantifier(p, i)
        out.append(atom * times)
    return "".join(out), i


def _atom(p: str, i: int) -> tuple[str, int]:
    char = p[i]
    if char in "^$":
        return "", i + 1
    if char == ".":
        return "a", i + 1
    if char == "\\":  # a class like \d, an escaped symbol, or an anchor like \b
        escaped = p[i + 1]
        return _ESCAPES.get(escaped, "" if escaped.isalnum() else escaped), i + 2
    if char == "[":
        end = _class_end(p, i)
        members = [p[i + 1 : i + 2].lstrip("^"), *_CLASS_CANDIDATES]
        chosen = next((c for c in members if c and _full(p[i : end + 1], c)), "a")
        return chosen, end + 1
    if char != "(":
        return char, i + 1
    i, lookaround = i + 1, False
    for prefix in ("?:", "?=", "?!", "?<=", "?<!"):
        if p.startswith(prefix, i):
            i, lookaround = i + len(prefix), prefix != "?:"
            break
    else:
        if p.startswith(("?P<", "?<"), i):  # a named group
            i = p.index(">", i) + 1
    inner, i = _sequence(p, i)
    return ("" if lookaround else inner), i + 1


def _quantifier(p: str, i: int) -> tuple[int, int]:
    """How often the atom before `i` repeats at least, and where the pattern goes on."""
    times = 1
    if i < len(p) and p[i] in "*+?":
        times, i = (1 if p[i] == "+" else 0), i + 1
    elif i < len(p) and p[i] == "{":
        match = re.match(r"\{(\d+)(,\d*)?\}", p[i:])
        if match:
            times, i = int(match.group(1)), i + match.end()
    if i < len(p) and p[i] in "?+":  # lazy or possessive
        i += 1
    return times, i


def _class_end(p: str, i: int) -> int:
    j = i + 1
    j += p[j] == "^"
    j += p[j] == "]"
    while p[j] != "]":
        j += 2 if p[j] == "\\" else 1
    return j


def _skip_alternatives(p: str, i: int) -> int:
    depth = 0
    while i < len(p):
        if p[i] == "\\":
            i += 1
        elif p[i] == "[":
            i = _class_end(p, i)
        elif p[i] == "(":
            depth += 1
        elif p[i] == ")":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return i


def _full(pattern: str, text: str) -> bool:
    try:
        return re.fullmatch(pattern, text) is not None
    except re.error:
        return False
