"""Tether's own OpenAPI 3.1 document, served at `GET /openapi.json`.

It is OpenAI's published document cut down to the operations Tether serves: the
package holds the cut (`openapi_base.json`, made by `tools/openapi_base.py` from
OpenAI's document, kept verbatim) and `document_bytes()` builds Tether's document
from it once per process, adding what Tether does differently on purpose:

* paths under `/v1` on the server's own root (`servers: [{url: "/"}]`), plus
  `/healthz` and `/openapi.json`; bearer API keys, optional (a server without keys
  runs open on loopback), with their 401/403/429/503 answers;
* the error statuses each operation answers, all OpenAI-shaped (`ErrorResponse`), and
  the `Idempotency-Key` header of `POST /v1/responses`;
* `GET /v1/responses/{id}?stream=true` answers `text/event-stream` (resumable
  streams), and streams may end with Tether's `response.cancelled` event;
* `DELETE /v1/responses/{id}` answers a body (`DeletedResponse`), and the Response
  fields OpenAI sends as null (`usage` while running, unset `user`, …) may be null;
* the bounds Tether enforces on query parameters (`limit` 1..100, `starting_after`
  ≥ 0), and list pages whose `first_id`/`last_id` are null when they are empty;
* request bodies as Tether checks them: unknown parameters are refused, null means
  unset, `model` names a served model, `input` is needed unless the request continues
  a stored context, features not supported yet take only null or empty, and input
  items and tools are the kinds every model takes (`message`, `function_call`,
  `function_call_output`, `reasoning`, `item_reference`; function tools). Models
  served by a Responses upstream also take OpenAI's hosted tools and hosted-tool
  items, passed on as given; the document does not list those.

Some rules are beyond JSON Schema (an id that must exist, a tool's `parameters` that
must be a valid JSON Schema, `tool_choice` naming a given tool, …): breaking them is
an OpenAI-shaped 400 naming the parameter, as the document's error responses say.

Sections: the operations Tether serves · request bodies · answers · building the
document · the route.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

import tether

BASE_PATH = Path(__file__).with_name("openapi_base.json")
_NULL = {"type": "null"}
_JSON = "application/json"
_SSE = "text/event-stream"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {_JSON: {"schema": schema}}


# --- the operations Tether serves ----------------------------------------------------

# OpenAI's path (under its `/v1` server) → the methods Tether serves on it.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "/responses": ("post",),
    "/responses/{response_id}": ("get", "delete"),
    "/responses/{response_id}/cancel": ("post",),
    "/responses/{response_id}/input_items": ("get",),
    "/responses/input_tokens": ("post",),
    "/conversations": ("post",),
    "/conversations/{conversation_id}": ("get", "post", "delete"),
    "/conversations/{conversation_id}/items": ("get", "post"),
    "/conversations/{conversation_id}/items/{item_id}": ("get", "delete"),
    "/models": ("get",),
}
# Schemas Tether's additions refer to that no kept operation references.
EXTRA_SCHEMAS = ("ErrorResponse", "ResponseFailedEvent")

# The error statuses each operation answers (always with an `ErrorResponse` body):
# 400 a bad body or query, 404 an unknown id or model, 409 an `Idempotency-Key` sent
# before with another body, 413 a body over `max_body_bytes`, 502 the model's upstream
# failed to count tokens.
ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("/responses", "post"): (400, 404, 409, 413),
    ("/responses/{response_id}", "get"): (400, 404),
    ("/responses/{response_id}", "delete"): (404,),
    ("/responses/{response_id}/cancel", "post"): (400, 404),
    ("/responses/{response_id}/input_items", "get"): (400, 404),
    ("/responses/input_tokens", "post"): (400, 404, 413, 502),
    ("/conversations", "post"): (400, 413),
    ("/conversations/{conversation_id}", "get"): (404,),
    ("/conversations/{conversation_id}", "post"): (400, 404, 413),
    ("/conversations/{conversation_id}", "delete"): (404,),
    ("/conversations/{conversation_id}/items", "get"): (400, 404),
    ("/conversations/{conversation_id}/items", "post"): (400, 404, 413),
    ("/conversations/{conversation_id}/items/{item_id}", "get"): (400, 404),
    ("/conversations/{conversation_id}/items/{item_id}", "delete"): (404,),
    ("/models", "get"): (),
}
# Every /v1 operation may also answer these, from the API-key layer.
AUTH_ERRORS = (401, 403, 429, 503)
_ERROR_TEXT = {
    401: "Missing or invalid API key (invalid_api_key).",
    403: "The key may not use this route (insufficient_permissions).",
    429: "A per-key limit (requests per minute, responses in flight) was reached; see Retry-After.",
    503: "The key store could not be reached.",
    400: "Bad request: the error says which parameter to change.",
    404: "Not found.",
    409: "The Idempotency-Key was used before with another body.",
    413: "The request body is larger than the server's max_body_bytes.",
    502: "The model's upstream failed.",
}

# --- request bodies -------------------------------------------------------------------

# Create-body fields of features not supported yet, and the JSON type each must have
# when sent anyway: only null or empty is accepted (`schemas.options`).
NOT_YET = {
    "prompt": "object",
    "context_management": "array",
    "moderation": "object",
    "access_programs": "object",
    "background_options": "object",
    "image": "object",
}
# The input items every model takes (`schemas.items.ITEM_TYPES`); a reasoning item's
# `id` is optional, as for every item Tether gives an id to.
INPUT_ITEMS = (
    "EasyInputMessage",
    "InputMessage",
    "OutputMessage",
    "FunctionToolCall",
    "FunctionCallOutputItemParam",
    "ReasoningInputItem",
    "ItemReferenceParam",
)
TOOL_CHOICES = ("ToolChoiceOptions", "ToolChoiceAllowed", "ToolChoiceFunction")
_FILE_PARTS = (
    "InputImageContent",
    "InputFileContent",
    "InputImageContentParamAutoParam",
    "InputFileContentParam",
)
_HOSTED_NOTE = (
    " Models served by a Responses upstream also take OpenAI's hosted-tool kinds, "
    "passed on as given."
)


def _flat_properties(schemas: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The properties of an object schema made of `allOf` parts; later parts win."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    properties: dict[str, Any] = {}
    for part in schema.get("allOf", []):
        properties |= _flat_properties(schemas, part)
    own: dict[str, Any] = schema.get("properties", {})
    return properties | own


def _empty(kind: str) -> dict[str, Any]:
    if kind == "array":
        return {"type": "array", "maxItems": 0}
    return {"type": "object", "maxProperties": 0}


def _create_body(schemas: dict[str, Any]) -> dict[str, Any]:
    """`POST /v1/responses` (and `/input_tokens`) as `schemas.parse_create_request`
    checks it: one flat object, no unknown parameters, null for any optional one."""
    properties = {}
    for name, schema in _flat_properties(schemas, schemas["CreateResponse"]).items():
        if name in NOT_YET:
            schema = {"description": "Not supported by Tether yet: leave it out."}
            schema["anyOf"] = [_NULL, _empty(NOT_YET[name])]
        elif name not in ("model", "input"):
            schema = {"anyOf": [schema, _NULL]}
        properties[name] = schema
    properties["previous_response_id"] = {"anyOf": [{"type": "string", "pattern": "^resp"}, _NULL]}
    conversation = {"type": "string", "pattern": "^conv"}
    reference: dict[str, Any] = {"type": "object", "properties": {"id": conversation}}
    reference |= {"required": ["id"], "additionalProperties": False}
    properties["conversation"] = {"anyOf": [conversation, reference, _NULL]}
    properties["model"] = {
        "type": "string",
        "minLength": 1,
        "description": "A model this server serves (`GET /v1/models`); others are 404.",
    }
    continued = {"type": ["string", "object"]}  # a stored context instead of `input`
    return {
        "type": "object",
        "properties": properties,
        "required": ["model"],
        "additionalProperties": False,
        "anyOf": [
            {"required": ["input"]},
            {
                "required": ["previous_response_id"],
                "properties": {"previous_response_id": continued},
            },
            {"required": ["conversation"], "properties": {"conversation": continued}},
        ],
    }


def _adjust_requests(schemas: dict[str, Any]) -> None:
    reasoning = copy.deepcopy(schemas["ReasoningItem"])
    reasoning["required"] = [key for key in reasoning["required"] if key != "id"]
    schemas["ReasoningInputItem"] = reasoning
    schemas["InputItem"] = {
        "description": "An input item." + _HOSTED_NOTE,
        "anyOf": [_ref(name) for name in INPUT_ITEMS],
    }
    schemas["Tool"] = {
        "description": "A function tool." + _HOSTED_NOTE,
        "anyOf": [_ref("FunctionTool")],
    }
    schemas["ToolChoiceParam"] = {
        "description": "How the model picks tools." + _HOSTED_NOTE,
        "anyOf": [_ref(name) for name in TOOL_CHOICES],
    }
    output = schemas["FunctionCallOutputItemParam"]
    output["properties"]["call_id"] = output["properties"]["call_id"]["anyOf"][0]
    output["required"] = [*output["required"], "call_id"]
    function = schemas["FunctionTool"]["properties"]
    function["name"] |= {"pattern": "^[a-zA-Z0-9_-]{1,64}$"}
    # Keys only a Responses upstream acts on: Tether takes only their no-op values.
    function["defer_loading"] = {"enum": [False]}
    function["allowed_callers"] = {"anyOf": [{"const": ["direct"]}, _NULL]}
    function["output_schema"] = _NULL
    schemas["InputParam"]["oneOf"][1]["minItems"] = 1
    for part in _FILE_PARTS:
        schemas[part]["properties"]["file_id"] = {
            "anyOf": [_NULL],
            "description": "Tether has no Files API: send the data or a URL instead.",
        }
    schemas["TetherCreateResponse"] = _create_body(schemas)
    for name in ("CreateConversationBody", "UpdateConversationBody"):
        schemas[name]["additionalProperties"] = False


# --- answers -------------------------------------------------------------------------


def _operation(path: str, method: str, base: dict[str, Any]) -> dict[str, Any]:
    operation = copy.deepcopy(base)
    operation.pop("security", None)
    kept = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
    for status in (*ERRORS[(path, method)], *AUTH_ERRORS):
        kept[str(status)] = {
            "description": _ERROR_TEXT[status],
            "content": _json_content(_ref("ErrorResponse")),
        }
    operation["responses"] = kept
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query" and parameter["name"] == "limit":
            parameter["schema"] |= {"minimum": 1, "maximum": 100}
        if parameter["in"] == "query" and parameter["name"] == "starting_after":
            parameter["schema"] |= {"minimum": 0}
    return operation


def _sse_content() -> dict[str, Any]:
    """An SSE stream of Responses events, ended by `data: [DONE]` unless the server turns
    it off. In OpenAPI 3.1 a `text/event-stream` schema describes one event: its `event`
    field and its `data`, JSON text here."""
    event = {
        "type": "object",
        "properties": {
            "event": {"type": "string"},
            "data": {
                "type": "string",
                "contentMediaType": _JSON,
                "contentSchema": _ref("ResponseStreamEvent"),
            },
        },
        "required": ["event", "data"],
    }
    done = {
        "type": "object",
        "properties": {"event": {"const": "message"}, "data": {"const": "[DONE]"}},
        "required": ["data"],
    }
    return {"schema": {"anyOf": [done, event]}}


def _adjust_operations(paths: dict[str, Any]) -> None:
    paths["/v1/responses"]["post"]["parameters"] = [
        {
            "in": "header",
            "name": "Idempotency-Key",
            "description": "A retry with the same key and body answers as the first attempt "
            "did (stream from the start, or the response) instead of generating again; "
            "needs store=true. The same key with another body is a 409.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }
    ]
    create = paths["/v1/responses"]["post"]["responses"]["200"]
    create["content"][_SSE] = _sse_content()
    create["links"] = {
        operation: {"operationId": operation, "parameters": {"response_id": "$response.body#/id"}}
        for operation in ("getResponse", "listInputItems", "cancelResponse", "deleteResponse")
    }
    retrieve = paths["/v1/responses/{response_id}"]["get"]["responses"]["200"]
    retrieve["content"][_SSE] = _sse_content()
    retrieve["description"] = "The response, or with `stream=true` its events (resumable)."
    delete = paths["/v1/responses/{response_id}"]["delete"]["responses"]["200"]
    delete["content"] = _json_content(_ref("DeletedResponse"))
    for path in ("/v1/responses", "/v1/responses/input_tokens"):
        body = {"required": True, "content": _json_content(_ref("TetherCreateResponse"))}
        paths[path]["post"]["requestBody"] = body
    items = paths["/v1/conversations/{conversation_id}/items"]["post"]["requestBody"]
    items["content"][_JSON]["schema"]["additionalProperties"] = False


def _own_paths() -> dict[str, Any]:
    health = {"type": "object", "properties": {"status": {"enum": ["ok"]}}, "required": ["status"]}
    return {
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: answers while the server is up.",
                "security": [],
                "responses": {"200": {"description": "OK", "content": _json_content(health)}},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {"description": "OK", "content": _json_content({"type": "object"})}
                },
            }
        },
    }


def _part_with(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """The `properties` of the `allOf` part of `schema` that declares `key`."""
    for part in schema["allOf"]:
        if key in part.get("properties", {}):
            properties: dict[str, Any] = part["properties"]
            return properties
    raise KeyError(key)


def _adjust_schemas(schemas: dict[str, Any]) -> None:
    cancelled = copy.deepcopy(schemas["ResponseFailedEvent"])
    cancelled["description"] = (
        "Tether's terminal event for a response cancelled while it was streamed "
        "(POST /v1/responses/{id}/cancel)."
    )
    cancelled["properties"]["type"] = {"type": "string", "enum": ["response.cancelled"]}
    schemas["ResponseCancelledEvent"] = cancelled
    schemas["ResponseStreamEvent"]["anyOf"].append(_ref("ResponseCancelledEvent"))
    schemas["DeletedResponse"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["response"]},
            "deleted": {"type": "boolean", "enum": [True]},
        },
        "required": ["id", "object", "deleted"],
    }
    # Response fields that are null as on OpenAI (the SDK types them as optional) where
    # OpenAI's document leaves the null out: settings the request left out, and the
    # usage of a response that has not ended.
    nullable = [
        (schemas["ModelResponseProperties"]["properties"], "user"),
        (_part_with(schemas["Response"], "prompt_cache_options"), "prompt_cache_options"),
        (_part_with(schemas["Response"], "usage"), "usage"),
    ]
    for properties, key in nullable:
        properties[key] = {"anyOf": [properties[key], _NULL]}
    # A null `default` on an object schema is invalid; the null is the other branch.
    schemas["ResponseStreamOptions"]["anyOf"][0].pop("default")
    for name in ("ResponseItemList", "ConversationItemList"):
        for key in ("first_id", "last_id"):
            field = schemas[name]["properties"][key]
            field["type"] = ["string", "null"]
            field["description"] += " Null when the page is empty."


# --- building the document ------------------------------------------------------------


def _names(node: Any, found: set[str]) -> set[str]:
    """The names of the schemas `node` refers to."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _names(value, found)
    elif isinstance(node, list):
        for value in node:
            _names(value, found)
    return found


def _used(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The schemas `paths` use, directly or through other schemas."""
    found: set[str] = set()
    pending = _names(paths, set())
    while pending:
        name = pending.pop()
        found.add(name)
        pending |= _names(schemas[name], set()) - found
    return {name: schemas[name] for name in sorted(found)}


def _drop_bare_discriminators(node: Any) -> None:
    """OpenAI's unions name a `discriminator` without a `mapping`, which in OpenAPI
    means the `type` values are schema names; they are not (`message`, …), so
    validators reject valid items. The unions validate the same without it."""
    if isinstance(node, dict):
        if isinstance(node.get("discriminator"), dict) and "mapping" not in node["discriminator"]:
            del node["discriminator"]
        for value in node.values():
            _drop_bare_discriminators(value)
    elif isinstance(node, list):
        for value in node:
            _drop_bare_discriminators(value)


def build(base: dict[str, Any]) -> dict[str, Any]:
    """Tether's document from the OpenAI base (which is left unchanged)."""
    paths: dict[str, Any] = {}
    for path, methods in OPERATIONS.items():
        paths[f"/v1{path}"] = {
            method: _operation(path, method, base["paths"][path][method]) for method in methods
        }
    _adjust_operations(paths)
    paths |= _own_paths()
    schemas = copy.deepcopy(base["components"]["schemas"])
    _adjust_schemas(schemas)
    _adjust_requests(schemas)
    _drop_bare_discriminators(schemas)
    return {
        "openapi": base["openapi"],
        "info": {
            "title": "Tether",
            "version": tether.__version__,
            "description": (
                "A self-hosted OpenAI Responses API server. This document is OpenAI's "
                f"(version {base['info']['version']}, MIT license) cut down to the "
                "operations Tether serves, with Tether's differences."
            ),
        },
        "servers": [{"url": "/"}],
        # Keys are optional: a server with none configured runs open on loopback.
        "security": [{"ApiKey": []}, {}],
        "paths": paths,
        "components": {
            "schemas": _used(paths, schemas),
            "securitySchemes": {
                "ApiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A project's API key (`tether keys create`).",
                }
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as JSON, built once per process."""
    return orjson.dumps(build(orjson.loads(BASE_PATH.read_bytes())))


# --- the route ----------------------------------------------------------------------


async def openapi_json(request: Request) -> Response:
    return Response(document_bytes(), media_type=_JSON)
