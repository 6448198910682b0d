"""The prompt side of the `llama_cpp` provider: which tools the model may call, and the
chat messages its GGUF chat template renders.

Function calls use one text format, whatever the model (the Hermes / Qwen format,
which many small models know):

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

A grammar holds the model to it (see `llama_grammar`). The model learns of the tools
from its chat template when the template renders tools in this same format (it
mentions `<tool_call>`); otherwise from a system message that lists them and shows the
format (`tool_instructions`). Earlier calls and their outputs go back to the model in
the same format: calls as assistant text, outputs as `tool` messages (templates with
tools) or as user messages wrapped in `<tool_response>` (the others).

What cannot be sent raises `ProviderError` (code `invalid_prompt`): images and files
(the model reads text only), tools other than functions, unknown tool choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from tether.domain.types import JSONObject
from tether.errors import ProviderError
from tether.providers.base import GenerationRequest

CALL_OPEN = "<tool_call>"
CALL_HEAD = CALL_OPEN + '\n{"name": "'
CALL_ARGUMENTS = '", "arguments": '
CALL_TAIL = "}\n</tool_call>"
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})

CallMode = Literal["none", "auto", "required"]


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """`offered`: the function tools the model is told of; `callable`: those the
    grammar lets it call. `mode` `required`: it must call one; `auto`: it may."""

    mode: CallMode
    offered: tuple[JSONObject, ...] = ()
    callable: tuple[JSONObject, ...] = ()


def tool_plan(request: GenerationRequest) -> ToolPlan:
    """What the request's `tools` and `tool_choice` allow; raises `ProviderError`."""
    for tool in request.tools:
        if tool.get("type") != "function":
            raise _cannot(
                f"use tools of type '{tool.get('type')}'; a llama_cpp model takes only "
                "function tools"
            )
    tools = tuple(request.tools)
    choice = request.tool_choice
    if not tools or choice == "none" or request.max_tool_calls == 0:
        return ToolPlan("none")
    if choice in ("auto", "required"):
        return ToolPlan("required" if choice == "required" else "auto", tools, tools)
    if isinstance(choice, dict) and choice.get("type") == "function":
        named = tuple(t for t in tools if t.get("name") == choice.get("name"))
        if not named:
            raise _cannot(
                f"call the function {choice.get('name')!r} named by tool_choice: no function "
                "tool of the request has that name"
            )
        return ToolPlan("required", tools, named)
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        names = {t.get("name") for t in choice.get("tools", []) if t.get("type") == "function"}
        allowed = tuple(t for t in tools if t.get("name") in names)
        mode = choice.get("mode", "auto")
        if not allowed or mode not in ("auto", "required"):
            return ToolPlan("none")
        return ToolPlan("required" if mode == "required" else "auto", allowed, allowed)
    kind = choice.get("type") if isinstance(choice, dict) else choice
    raise _cannot(
        f"take tool_choice {kind!r}; use 'auto', 'none', 'required', "
        "{'type': 'function', 'name': …} or allowed_tools"
    )


def chat_messages(
    request: GenerationRequest, tools: ToolPlan, *, template_tools: bool
) -> list[JSONObject]:
    """The messages for the chat template: instructions, then the input items in order.
    `template_tools`: the template renders tools itself (else a system message does)."""
    messages: list[JSONObject] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for item in request.input_items:
        kind = item.get("type", "message")
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _message_text(item)})
        elif kind == "function_call":
            call = call_text(item["name"], item.get("arguments") or "{}")
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last["content"] = f"{last['content']}\n{call}" if last["content"] else call
            else:
                messages.append({"role": "assistant", "content": call})
        elif kind == "function_call_output":
            output = _output_text(item.get("output", ""))
            if template_tools:
                messages.append({"role": "tool", "content": output})
            else:
                wrapped = f"<tool_response>\n{output}\n</tool_response>"
                messages.append({"role": "user", "content": wrapped})
        elif kind != "reasoning":
            raise _cannot(f"take input items of type '{kind}'")
    if tools.offered and not template_tools:
        text = tool_instructions(tools.offered)
        if messages and messages[0]["role"] == "system":
            messages[0]["content"] = f"{messages[0]['content']}\n\n{text}"
        else:
            messages.insert(0, {"role": "system", "content": text})
    return messages


def template_tool(tool: JSONObject) -> JSONObject:
    """A function tool as chat templates take it (Chat Completions' shape)."""
    keys = ("name", "description", "parameters")
    return {"type": "function", "function": {k: tool[k] for k in keys if tool.get(k) is not None}}


def tool_instructions(tools: tuple[JSONObject, ...]) -> str:
    """The system text that tells a model without tool support how to call functions."""
    listed = "\n".join(orjson.dumps(template_tool(tool)["function"]).decode() for tool in tools)
    return (
        "You can call functions. They are listed as JSON between <tools></tools>:\n"
        f"<tools>\n{listed}\n</tools>\n"
        "To call one, answer with only this:\n"
        f'{CALL_OPEN}\n{{"name": <function name>, "arguments": <arguments as a JSON object>}}\n'
        "</tool_call>"
    )


def call_text(name: str, arguments: str) -> str:
    """A function call as the model writes it."""
    return f"{CALL_HEAD}{name}{CALL_ARGUMENTS}{arguments}{CALL_TAIL}"


def _message_text(item: JSONObject) -> str:
    content = item.get("content", [])
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            texts.append(str(part.get("text", "")))
        elif kind == "refusal":
            texts.append(str(part.get("refusal", "")))
        else:
            raise _cannot(f"take {kind} parts: a llama_cpp model reads text only")
    return "".join(texts)


def _output_text(output: str | list[JSONObject]) -> str:
    if isinstance(output, str):
        return output
    for part in output:
        if part.get("type") not in _TEXT_PARTS:
            raise _cannot(
                f"take {part.get('type')} parts in a function_call_output: a llama_cpp model "
                "reads text only"
            )
    return "".join(str(part.get("text", "")) for part in output)


def _cannot(what: str) -> ProviderError:
    return ProviderError(f"cannot {what}", code="invalid_prompt")
