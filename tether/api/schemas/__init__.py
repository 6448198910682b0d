"""Request validation at the edge: bodies and query strings in, frozen values out.

Contract:

* `parse_create_request(body, known_models=…, hosted_tools=…)` parses the JSON body of
  `POST /v1/responses` into a `CreateRequest`. Every error is raised before any work
  starts: `InvalidRequestError` (400) whose `param` is the offending path in OpenAI's
  style (`"max_output_tokens"`, `"input[0].content"`, `"tools[1].parameters"`) and
  whose message says what to change; `NotFoundError` (404, `model_not_found`) for a
  model not in `known_models`, checked last. Models in `hosted_tools` (served by a
  Responses upstream) also take hosted tools and hosted-tool input items, as given.
* Codes follow OpenAI: `unknown_parameter`, `invalid_type`, `invalid_value`,
  `missing_required_parameter`, `integer_below_min_value` (and the other
  `{integer,decimal}_{below_min,above_max}_value`), `string_above_max_length`,
  `empty_string`, `empty_array`, `invalid_function_parameters` / `invalid_json_schema`
  (a tool's or a format's JSON Schema), `unsupported_parameter` for OpenAI features
  this server does not implement (yet).
* Null means "unset" for every optional field. Booleans are never numbers.
* `CreateRequest.settings` carries the validated value of each `ECHO_DEFAULTS` key the
  request set, for `tether.domain.response.build_response` to echo.
* What needs the stored context is left to the API layer: resolving
  `previous_response_id`, `conversation` and `item_reference` items, and
  `require_json_mention` (the `json_object` rule) over the whole context.
* `parse_retrieve_query` / `parse_list_query` read the query strings of
  `GET /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`; unknown params
  are ignored.

Modules: `create` (the body), `options` (one checker per simple field), `items` and
`parts` (the `input` field), `tools` (`tools`, `tool_choice`), `text_format` (`text`),
`strict_schema` (JSON Schema and strict-mode rules), `query` (query strings), `fields`
(single-value checks and the error builders).
"""

from __future__ import annotations

from tether.api.schemas.create import CreateRequest, parse_create_request
from tether.api.schemas.query import (
    ListQuery,
    RetrieveQuery,
    parse_list_query,
    parse_retrieve_query,
)
from tether.api.schemas.strict_schema import schema_problem, strict_schema_problem
from tether.api.schemas.text_format import JSON_MENTION_MESSAGE, require_json_mention

__all__ = [
    "JSON_MENTION_MESSAGE",
    "CreateRequest",
    "ListQuery",
    "RetrieveQuery",
    "parse_create_request",
    "parse_list_query",
    "parse_retrieve_query",
    "require_json_mention",
    "schema_problem",
    "strict_schema_problem",
]
