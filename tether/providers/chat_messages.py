"""The request side of the `chat` provider: a `GenerationRequest` (Responses input and
settings) turned into a Chat Completions request body.

What becomes what:

    instructions                   a first `system` message
    message                        {"role", "content"} (`developer` becomes `system`); the
                                   content is one string when every part is text, else a
                                   list of `text` / `image_url` / `file` parts
      input_image {image_url, detail}   {"type": "image_url", "image_url": {"url", "detail"}}
      input_file {file_data, filename}  {"type": "file", "file": {"file_data", "filename"}}
      refusal (assistant)               text of the message, see below
    function_call                  a `tool_calls` entry of an assistant message; calls in a
                                   row, and an assistant message just before them, make
                                   ONE assistant message, as Chat Completions expects
    function_call_output           {"role": "tool", "tool_call_id", "content": its text}
    reasoning                      left out: Chat Completions has no field for earlier
                                   reasoning, so the model does not see it again
    tools (function only)          `tools: [{"type": "function", "function": {…}}]`, with
                                   `tool_choice` and `parallel_tool_calls`
    text.format                    `response_format` (json_schema / json_object)
    reasoning.effort               `reasoning_effort`
    include output_text.logprobs   `logprobs: true` and `top_logprobs`
    max_output_tokens              `max_tokens`; `temperature` and `top_p` as they are

`max_tool_calls` has no Chat Completions field and is not sent.

An earlier refusal of the assistant is sent as the text of its message, not in Chat
Completions' `refusal` field: self-hosted servers (vLLM, Ollama, llama.cpp) ignore that
field, and the model should see what it answered.

What cannot be sent raises `ProviderError` (code `invalid_prompt`) whose message starts
with "cannot …", for the provider to prefix with the model name: files by URL or id
(the upstream cannot fetch them), images by file id, images or files in a
`function_call_output` (a `tool` message holds only text), tools other than functions,
and other item types.
"""

from __future__ import annotations

from typing import Any

from tether.domain.types import JSONObject
from tether.errors import ProviderError
from tether.providers.base import GenerationRequest

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_PLAIN_PARTS = _TEXT_PARTS | {"refusal"}
_FUNCTION_KEYS = ("name", "description", "parameters", "strict")
_SCHEMA_KEYS = ("name", "schema", "strict", "description")


def chat_body(request: GenerationRequest, upstream_model: str) -> JSONObject:
    """The streaming Chat Completions body for `request`; raises `ProviderError`."""
    body: JSONObject = {
        "model": upstream_model,
        "messages": chat_messages(request),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.max_output_tokens is not None:
        body["max_tokens"] = request.max_output_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.tools:
        body["tools"] = chat_tools(request.tools)
        body["tool_choice"] = _tool_choice(request.tool_choice)
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.text_format is not None and (fmt := _response_format(request.text_format)):
        body["response_format"] = fmt
    if (effort := (request.reasoning or {}).get("effort")) is not None:
        body["reasoning_effort"] = effort
    if request.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs or 0
    if request.continuation is not None:
        # vLLM's assistant prefill: the model goes on from the partial message.
        body["messages"].append({"role": "assistant", "content": request.continuation})
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False
    return body


def chat_messages(request: GenerationRequest) -> list[JSONObject]:
    """The `messages` of the body: instructions, then the input items in order."""
    messages: list[JSONObject] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    # The assistant message that a following function_call joins, if any.
    calls_join: JSONObject | None = None
    for item in request.input_items:
        kind = item.get("type", "message")
        if kind == "message":
            message = _message(item)
            messages.append(message)
            calls_join = message if message["role"] == "assistant" else None
        elif kind == "function_call":
            if calls_join is None:
                calls_join = {"role": "assistant", "content": None}
                messages.append(calls_join)
            calls_join.setdefault("tool_calls", []).append(_tool_call(item))
        elif kind == "function_call_output":
            output = _output_text(item["output"])
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": output})
            calls_join = None
        elif kind != "reasoning":
            raise _cannot(f"take input items of type '{kind}'")
    return messages


def chat_tools(tools: list[JSONObject]) -> list[JSONObject]:
    """Responses function tools as Chat Completions tools, keys that are unset left out."""
    result: list[JSONObject] = []
    for tool in tools:
        if tool.get("type") != "function":
            raise _cannot(
                f"use tools of type '{tool.get('type')}'; a chat upstream takes only function tools"
            )
        function = {key: tool[key] for key in _FUNCTION_KEYS if tool.get(key) is not None}
        result.append({"type": "function", "function": function})
    return result


# --- messages ------------------------------------------------------------------------


def _message(item: JSONObject) -> JSONObject:
    role = item["role"]
    if role == "developer":
        role = "system"
    content = item.get("content", [])
    if isinstance(content, str):
        return {"role": role, "content": content}
    if all(part.get("type") in _PLAIN_PARTS for part in content):
        return {"role": role, "content": "".join(_plain_text(part) for part in content)}
    return {"role": role, "content": [_part(part) for part in content]}


def _plain_text(part: JSONObject) -> str:
    text = part.get("refusal") if part.get("type") == "refusal" else part.get("text")
    return str(text or "")


def _part(part: JSONObject) -> JSONObject:
    kind = part.get("type")
    if kind in _PLAIN_PARTS:
        return {"type": "text", "text": _plain_text(part)}
    if kind == "input_image":
        return _image(part)
    if kind == "input_file":
        return _file(part)
    raise _cannot(f"take content parts of type '{kind}'")


def _image(part: JSONObject) -> JSONObject:
    url = part.get("image_url")
    if not url:
        raise _cannot("take an input_image by file_id; give its image_url (an https: or data: URL)")
    image: JSONObject = {"url": url}
    if part.get("detail") is not None:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file(part: JSONObject) -> JSONObject:
    if part.get("file_data"):
        file: JSONObject = {"file_data": part["file_data"]}
        if part.get("filename") is not None:
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    if part.get("file_url"):
        raise _cannot(
            "fetch file URLs (input_file.file_url): the chat upstream cannot fetch them;"
            " send the file's contents as input_file.file_data instead"
        )
    raise _cannot(
        "take an input_file without file_data; send the file's contents as input_file.file_data"
    )


def _tool_call(item: JSONObject) -> JSONObject:
    function = {"name": item["name"], "arguments": item["arguments"]}
    return {"id": item["call_id"], "type": "function", "function": function}


def _output_text(output: str | list[JSONObject]) -> str:
    if isinstance(output, str):
        return output
    for part in output:
        if part.get("type") not in _TEXT_PARTS:
            raise _cannot(
                f"take {part.get('type')} parts in a function_call_output: a Chat"
                " Completions tool message holds only text; send images and files in a"
                " user message instead"
            )
    return "".join(str(part.get("text", "")) for part in output)


# --- settings ------------------------------------------------------------------------


def _tool_choice(choice: str | JSONObject) -> str | JSONObject:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _cannot(
        f"take tool_choice of type '{choice.get('type')}'; use 'auto', 'none', 'required'"
        " or {'type': 'function', 'name': …}"
    )


def _response_format(fmt: JSONObject) -> JSONObject | None:
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema: dict[str, Any] = {key: fmt[key] for key in _SCHEMA_KEYS if fmt.get(key) is not None}
        return {"type": "json_schema", "json_schema": schema}
    return None


def _cannot(what: str) -> ProviderError:
    return ProviderError(f"cannot {what}", code="invalid_prompt")
