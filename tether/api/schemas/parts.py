"""Content parts: of input messages, and of a `function_call_output`'s `output` list.

`validate_part` checks one part against the part types its place allows and returns a
cleaned copy: only known keys, nulls dropped, `output_text` given `annotations: []`,
`input_image` given `detail: "auto"` when absent.

Images and files come inline: `input_image` by `image_url` (an http(s) URL or a
`data:image/…;base64,` URL), `input_file` by `file_url` or by `file_data` (a data URL
or bare base64) with a `filename`. Tether has no Files API, so `file_id` is
`unsupported_parameter`, as is every `input_audio` part.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from tether.api.schemas.fields import (
    empty_string,
    expect_array,
    expect_choice,
    expect_object,
    expect_str,
    invalid_type,
    invalid_value,
    missing,
    reject_unknown_keys,
    require,
    show,
    unsupported,
)
from tether.errors import InvalidRequestError

INPUT_PARTS = ("input_text", "input_image", "input_file")
PART_KEYS = {
    "input_text": frozenset({"type", "text", "prompt_cache_breakpoint"}),
    "input_image": frozenset({"type", "image_url", "file_id", "detail", "prompt_cache_breakpoint"}),
    "input_file": frozenset(
        {
            "type",
            "file_data",
            "file_id",
            "file_url",
            "filename",
            "detail",
            "prompt_cache_breakpoint",
        }
    ),
    "output_text": frozenset({"type", "text", "annotations", "logprobs"}),
    "refusal": frozenset({"type", "refusal"}),
}
UNSUPPORTED_PARTS = frozenset({"input_audio"})
IMAGE_DETAILS = ("low", "high", "auto", "original")
FILE_DETAILS = ("auto", "low", "high")

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_NO_FILES_API = "Tether has no Files API;"


def validate_part(value: Any, allowed: Collection[str], path: str, hint: str) -> dict[str, Any]:
    """Check one content part; `allowed` are the part types this place takes, `hint`
    is added to the error when the type is not one of them."""
    part = expect_object(value, path, "a content part object")
    if part.get("type") is None:
        raise missing(f"{path}.type", f"Use one of {', '.join(allowed)}.")
    part_type = expect_str(part["type"], f"{path}.type")
    if part_type in UNSUPPORTED_PARTS:
        raise unsupported(
            path,
            f"Content parts of type '{part_type}' are",
            "Send text (input_text), images (input_image) or files (input_file).",
        )
    if part_type not in allowed:
        raise invalid_value(f"{path}.type", part_type, allowed, hint)
    reject_unknown_keys(part, PART_KEYS[part_type], path)
    result: dict[str, Any] = {"type": part_type}
    if part_type == "input_image":
        result |= _image(part, path)
    elif part_type == "input_file":
        result |= _file(part, path)
    else:
        field = "refusal" if part_type == "refusal" else "text"
        result[field] = expect_str(require(part, field, path), f"{path}.{field}")
    if part_type == "output_text":
        annotations = part.get("annotations")
        result["annotations"] = (
            [] if annotations is None else _annotations(annotations, f"{path}.annotations")
        )
        if part.get("logprobs") is not None:
            result["logprobs"] = _logprobs(part["logprobs"], f"{path}.logprobs")
    if part.get("prompt_cache_breakpoint") is not None:
        where = f"{path}.prompt_cache_breakpoint"
        breakpoint_ = expect_object(part["prompt_cache_breakpoint"], where)
        reject_unknown_keys(breakpoint_, ("mode",), where)
        mode = expect_choice(require(breakpoint_, "mode", where), f"{where}.mode", ("explicit",))
        result["prompt_cache_breakpoint"] = {"mode": mode}
    return result


# Each annotation type and the fields it requires (strings, or integers for *index).
ANNOTATION_FIELDS = {
    "file_citation": ("file_id", "filename", "index"),
    "url_citation": ("start_index", "end_index", "title", "url"),
    "container_file_citation": ("container_id", "end_index", "file_id", "filename", "start_index"),
    "file_path": ("file_id", "index"),
}


def _annotations(value: Any, path: str) -> list[dict[str, Any]]:
    """Annotations of an earlier output: objects of a known `type` with its fields."""
    annotations = expect_array(value, path)
    for index, annotation in enumerate(annotations):
        where = f"{path}[{index}]"
        entry = expect_object(annotation, where)
        kind = expect_choice(require(entry, "type", where), f"{where}.type", ANNOTATION_FIELDS)
        for name in ANNOTATION_FIELDS[kind]:
            field = require(entry, name, where)
            if name.endswith("index"):
                if not isinstance(field, int) or isinstance(field, bool):
                    raise invalid_type(f"{where}.{name}", "an integer", field)
            else:
                expect_str(field, f"{where}.{name}")
    return annotations


def _logprobs(value: Any, path: str) -> list[dict[str, Any]]:
    """Logprobs of an earlier output: `{token, logprob, bytes, top_logprobs}` entries."""
    entries = expect_array(value, path)
    for index, entry in enumerate(entries):
        where = f"{path}[{index}]"
        _logprob(expect_object(entry, where), where)
        for alt_index, alt in enumerate(entry.get("top_logprobs") or []):
            _logprob(expect_object(alt, f"{where}.top_logprobs[{alt_index}]"), where)
    return entries


def _logprob(entry: dict[str, Any], where: str) -> None:
    expect_str(require(entry, "token", where), f"{where}.token")
    logprob = require(entry, "logprob", where)
    if not isinstance(logprob, int | float) or isinstance(logprob, bool):
        raise invalid_type(f"{where}.logprob", "a number", logprob)
    if entry.get("bytes") is not None:
        for byte in expect_array(entry["bytes"], f"{where}.bytes"):
            if not isinstance(byte, int) or isinstance(byte, bool):
                raise invalid_type(f"{where}.bytes", "an array of integers", entry["bytes"])
    if entry.get("top_logprobs") is not None:
        expect_array(entry["top_logprobs"], f"{where}.top_logprobs")


def _image(part: dict[str, Any], path: str) -> dict[str, Any]:
    if part.get("file_id") is not None:
        raise unsupported(
            f"{path}.file_id",
            "Images by 'file_id' are",
            f"{_NO_FILES_API} send 'image_url' with a URL or data URL instead.",
        )
    url = require(part, "image_url", path, "Send an http(s) URL or a data URL of the image.")
    detail = part.get("detail")
    return {
        "image_url": _url(url, f"{path}.image_url", image=True),
        "detail": "auto"
        if detail is None
        else expect_choice(detail, f"{path}.detail", IMAGE_DETAILS),
    }


def _file(part: dict[str, Any], path: str) -> dict[str, Any]:
    if part.get("file_id") is not None:
        raise unsupported(
            f"{path}.file_id",
            "Files by 'file_id' are",
            f"{_NO_FILES_API} send 'file_data' (with 'filename') or 'file_url' instead.",
        )
    data, url = part.get("file_data"), part.get("file_url")
    if data is not None and url is not None:
        raise InvalidRequestError(
            f"Invalid '{path}': send either 'file_data' or 'file_url', not both.",
            param=path,
            code="invalid_value",
        )
    result: dict[str, Any] = {}
    if url is not None:
        result["file_url"] = _url(url, f"{path}.file_url", image=False)
    elif data is not None:
        result["file_data"] = _file_data(data, f"{path}.file_data")
        hint = "Name the file sent in 'file_data', e.g. 'report.pdf'."
        result["filename"] = expect_str(require(part, "filename", path, hint), f"{path}.filename")
    else:
        raise missing(
            f"{path}.file_data",
            "Send the file as 'file_data' (a data URL or base64) with 'filename', or as "
            "'file_url'.",
        )
    if url is not None and part.get("filename") is not None:
        result["filename"] = expect_str(part["filename"], f"{path}.filename")
    if part.get("detail") is not None:
        result["detail"] = expect_choice(part["detail"], f"{path}.detail", FILE_DETAILS)
    return result


def _url(value: Any, param: str, *, image: bool) -> str:
    """An http(s) URL, or a base64 data URL (of an image, for `image`)."""
    url = expect_str(value, param)
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        mime = (match.group(1) or "") if match else ""
        if match and len(url) > match.end() and (mime.startswith("image/") or not image):
            return url
    elif url.startswith(("http://", "https://")) and _has_host(url):
        return url
    example = "data:image/png;base64,…" if image else "data:application/pdf;base64,…"
    raise InvalidRequestError(
        f"Invalid '{param}': expected an http(s) URL or a base64 data URL ('{example}'), "
        f"but got '{show(url)}' instead.",
        param=param,
        code="invalid_value",
    )


def _has_host(url: str) -> bool:
    try:
        return bool(urlsplit(url).hostname)
    except ValueError:  # e.g. a malformed IPv6 host
        return False


def _file_data(value: Any, param: str) -> str:
    data = expect_str(value, param)
    if not data:
        raise empty_string(param, "a data URL or base64-encoded file content")
    if data.startswith("data:"):
        match = _DATA_URL.match(data)
        if match and len(data) > match.end():
            return data
    elif _BASE64.fullmatch(data):
        return data
    raise InvalidRequestError(
        f"Invalid '{param}': expected a base64 data URL ('data:application/pdf;base64,…') or "
        "base64-encoded file content, but got text that is not base64.",
        param=param,
        code="invalid_value",
    )
