"""The output side of the `llama_cpp` provider: generated text → provider deltas.

`OutputParser` is fed the decoded text of each token and returns the deltas it makes:
- without tools, every piece is output text;
- with a call forced by the grammar (`required`), the whole output is one call in the
  `llama_prompt` format: the function name comes first (one delta carrying `name`),
  then the arguments stream as they are written; the fixed text around them is
  dropped;
- with `auto`, text streams until the model writes `<tool_call>`, from where it is a
  call. Text that could be the start of that marker, and trailing whitespace, are
  held back until the next piece tells; whitespace alone before a call is dropped.
  `anywhere=False` (a JSON format is asked for too, so the output is either the JSON
  text or one call): only a marker at the very start makes a call.
"""

from __future__ import annotations

from tether.providers.base import Delta, TextDelta, ToolCallDelta
from tether.providers.llama_prompt import CALL_ARGUMENTS, CALL_HEAD, CALL_OPEN, CALL_TAIL, CallMode

# Arguments held back: the fixed tail and the one optional space before it.
_ARGUMENTS_HOLD = len(CALL_TAIL) + 1


class OutputParser:
    def __init__(self, mode: CallMode, *, anywhere: bool = True) -> None:
        self._mode = mode
        self._anywhere = anywhere
        self._call: _Call | None = _Call() if mode == "required" else None
        self._held = ""  # auto mode: text not yet known to be text
        self._decided = False  # auto mode without `anywhere`: the first character was seen

    def __repr__(self) -> str:
        return f"<OutputParser {self._mode} call={self._call is not None} held={self._held!r}>"

    def feed(self, text: str) -> list[Delta]:
        if self._call is not None:
            return self._call.feed(text)
        if self._mode != "auto":
            return [TextDelta(text)]
        if not self._anywhere and self._decided:
            return [TextDelta(text)]
        return self._auto(self._held + text)

    def end(self) -> list[Delta]:
        """The deltas of what was held back, once the output is complete (or cut)."""
        if self._call is not None:
            return self._call.end()
        held, self._held = self._held, ""
        return [TextDelta(held)] if held.strip() else []

    def _auto(self, text: str) -> list[Delta]:
        marker = text.find(CALL_OPEN)
        if marker >= 0 and (self._anywhere or not text[:marker].strip()):
            self._held = ""
            before = text[:marker]
            self._call = _Call()
            deltas: list[Delta] = [TextDelta(before)] if before.strip() else []
            return deltas + self._call.feed(text[marker:])
        if not self._anywhere and text.strip() and not CALL_OPEN.startswith(text.lstrip()):
            self._decided, self._held = True, ""
            return [TextDelta(text)]
        keep = _held_back(text)
        self._held = text[len(text) - keep :]
        ready = text[: len(text) - keep]
        return [TextDelta(ready)] if ready else []


def _held_back(text: str) -> int:
    """How many characters at the end of `text` must wait: a possible start of the call
    marker, with the whitespace before it (all of the text while it is only whitespace)."""
    keep = 0
    for size in range(min(len(CALL_OPEN) - 1, len(text)), 0, -1):
        if CALL_OPEN.startswith(text[-size:]):
            keep = size
            break
    stripped = text[: len(text) - keep]
    return len(text) - len(stripped.rstrip())


class _Call:
    """One call being written: `<tool_call>\\n{"name": "N", "arguments": ARGS}\\n</tool_call>`."""

    def __init__(self) -> None:
        self._head = ""  # text before the arguments, until the name is complete
        self._arguments = ""
        self._sent = 0
        self._named = False

    def feed(self, text: str) -> list[Delta]:
        deltas: list[Delta] = []
        if not self._named:
            self._head += text
            end = self._head.find(CALL_ARGUMENTS)
            if end < 0:
                return deltas
            name = self._head[len(CALL_HEAD) : end]
            self._arguments = self._head[end + len(CALL_ARGUMENTS) :]
            self._named = True
            deltas.append(ToolCallDelta(0, "", name=name))
        else:
            self._arguments += text
        ready = len(self._arguments) - _ARGUMENTS_HOLD
        if ready > self._sent:
            deltas.append(ToolCallDelta(0, self._arguments[self._sent : ready]))
            self._sent = ready
        return deltas

    def end(self) -> list[Delta]:
        if not self._named:
            return []  # cut before the name was complete: nothing to call
        arguments = self._arguments
        if arguments.endswith(CALL_TAIL):
            arguments = arguments[: -len(CALL_TAIL)].rstrip()
        rest = arguments[self._sent :]
        return [ToolCallDelta(0, rest)] if rest else []
