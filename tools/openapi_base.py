"""Regenerate `tether/api/openapi_base.json` from OpenAI's published OpenAPI document.

The base keeps, verbatim, only the operations Tether serves (`tether.api.openapi.OPERATIONS`)
and the components they reference, directly or through other components, plus the
few schemas Tether's own additions point at (`EXTRA_SCHEMAS`). The `x-oaiMeta` blocks
(documentation examples) are dropped. Tether's differences are applied when the
document is built (`tether.api.openapi.document`), never here, so re-running this on a
newer OpenAI document updates the base without losing them.

Usage: python tools/openapi_base.py PATH/TO/openai-openapi.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tether.api.openapi import BASE_PATH, EXTRA_SCHEMAS, OPERATIONS

DROPPED_KEYS = ("x-oaiMeta",)


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in DROPPED_KEYS}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def prune(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of `spec` that Tether's document is built from."""
    paths: dict[str, Any] = {}
    for path, methods in OPERATIONS.items():
        paths[path] = {method: _strip(spec["paths"][path][method]) for method in methods}
    pending: set[str] = {f"#/components/schemas/{name}" for name in EXTRA_SCHEMAS}
    _refs(paths, pending)
    components: dict[str, dict[str, Any]] = {}
    while pending:
        ref = pending.pop()
        _, _, kind, name = ref.split("/")
        if name in components.get(kind, {}):
            continue
        component = _strip(spec["components"][kind][name])
        components.setdefault(kind, {})[name] = component
        _refs(component, pending)
    return {
        "openapi": spec["openapi"],
        "info": {"title": spec["info"]["title"], "version": spec["info"]["version"]},
        "paths": paths,
        "components": {kind: dict(sorted(v.items())) for kind, v in sorted(components.items())},
    }


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    spec = json.loads(Path(sys.argv[1]).read_text())
    text = json.dumps(prune(spec), indent=1, ensure_ascii=False) + "\n"
    BASE_PATH.write_text(text)
    print(f"wrote {BASE_PATH.name}: {len(text)} characters")


if __name__ == "__main__":
    main()
