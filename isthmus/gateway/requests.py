"""Parse and check OpenAI request bodies: JSON in, a typed request out, or a precise 400.

Invariant: nothing reaches routing unless the body is a JSON object (valid UTF-8) whose fields
have the types the OpenAI API gives them; every refusal names the parameter (``messages[2].role``)
and what was expected. Fields this gateway does not interpret pass through to the upstream
untouched, as OpenAI-compatible servers accept extensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from isthmus.engines.tokens import approx_tokens, block_hashes, chat_prompt_tokens
from isthmus.gateway.errors import ApiError

__all__ = ["ParsedRequest", "parse_request"]

Endpoint = Literal["chat", "completion", "embedding"]
DEFAULT_MAX_OUTPUT_TOKENS = 256
_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    kind: Endpoint
    body: dict[str, Any]
    model: str
    stream: bool
    prompt_tokens: int
    max_output_tokens: int
    block_hashes: tuple[int, ...]
    include_usage: bool
    data_class: str | None


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code, param)


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _expect(body: dict[str, Any], name: str, kinds: tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in kinds:
        raise _bad(f"'{name}' must be {what}; found a boolean", name, "invalid_type")
    if not isinstance(value, kinds):
        raise _bad(f"'{name}' must be {what}; found {_type_name(value)}", name, "invalid_type")
    return value


def _messages_tokens(messages: Any) -> list[str]:
    if not isinstance(messages, list):
        raise _bad(
            f"'messages' must be an array of message objects; found {_type_name(messages)}",
            "messages",
            "invalid_type",
        )
    if not messages:
        raise _bad("'messages' must contain at least one message", "messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(
                f"'{where}' must be an object; found {_type_name(message)}", where, "invalid_type"
            )
        role = message.get("role")
        if not isinstance(role, str):
            raise _bad(f"'{where}.role' is required and must be a string", f"{where}.role")
        if role not in _ROLES:
            raise _bad(
                f"'{where}.role' must be one of {', '.join(sorted(_ROLES))}; found {role!r}",
                f"{where}.role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _bad(
                f"'{where}.content' must be a string or an array of parts; found {_type_name(content)}",
                f"{where}.content",
                "invalid_type",
            )
    return chat_prompt_tokens(messages)


def _prompt_tokens(prompt: Any, param: str) -> list[str]:
    if isinstance(prompt, str):
        return approx_tokens(prompt)
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return [t for p in prompt for t in approx_tokens(p)]
    if isinstance(prompt, list) and all(
        isinstance(p, int) and not isinstance(p, bool) for p in prompt
    ):
        return [str(p) for p in prompt]
    raise _bad(
        f"'{param}' must be a string, an array of strings or an array of token ids; "
        f"found {_type_name(prompt)}",
        param,
        "invalid_type",
    )


def _check_tools(tools: Any) -> None:
    """``tools``: an array of objects, each with a string ``type``; a function tool names its
    function (the guard checks that name against the tenant's allowed tools)."""
    if not isinstance(tools, list):
        raise _bad(f"'tools' must be an array; found {_type_name(tools)}", "tools", "invalid_type")
    for k, tool in enumerate(tools):
        where = f"tools[{k}]"
        if not isinstance(tool, dict):
            raise _bad(
                f"'{where}' must be an object; found {_type_name(tool)}", where, "invalid_type"
            )
        if not isinstance(tool.get("type"), str):
            raise _bad(f"'{where}.type' is required and must be a string", f"{where}.type")
        function = tool.get("function")
        if function is None and tool["type"] != "function":
            continue
        if not isinstance(function, dict):
            raise _bad(
                f"'{where}.function' must be an object; found {_type_name(function)}",
                f"{where}.function",
                "invalid_type",
            )
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(
                f"'{where}.function.name' is required and must be a non-empty string",
                f"{where}.function.name",
            )


def _check_generation_options(body: dict[str, Any]) -> None:
    """The types of the generation options an engine would otherwise reject with less care (or
    the guard would misread): tools, tool_choice, response_format, stop, seed, penalties."""
    if body.get("tools") is not None:
        _check_tools(body["tools"])
    _expect(body, "tool_choice", (str, dict), "a string or an object")
    _expect(body, "response_format", (dict,), "an object")
    _expect(body, "seed", (int,), "an integer")
    _expect(body, "user", (str,), "a string")
    _expect(body, "logit_bias", (dict,), "an object")
    stop = _expect(body, "stop", (str, list), "a string or an array of strings")
    if isinstance(stop, list) and not all(isinstance(s, str) for s in stop):
        raise _bad("'stop' must be a string or an array of strings", "stop", "invalid_type")
    for name in ("presence_penalty", "frequency_penalty"):
        value = _expect(body, name, (int, float), "a number")
        if value is not None and not -2.0 <= value <= 2.0:
            raise _bad(f"'{name}' must be between -2 and 2; found {value}", name)


def parse_request(kind: Endpoint, raw: bytes, index_block_tokens: int) -> ParsedRequest:
    """Check a request body for ``kind`` and extract what routing needs."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise _bad(
                f"the body is not valid UTF-8: byte {raw[bad.start]:#04x} at offset {bad.start}",
                None,
                "invalid_json",
            ) from None
        raise _bad(f"the body is not valid JSON: {exc}", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad(
            f"the body must be a JSON object; found {_type_name(body)}", None, "invalid_type"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad(
            "'model' is required and must be a non-empty string",
            "model",
            "missing_model" if model is None else "invalid_type",
        )
    stream = _expect(body, "stream", (bool,), "a boolean") or False
    if kind == "embedding" and stream:
        raise _bad("embeddings cannot be streamed", "stream")
    if kind == "chat":
        tokens = _messages_tokens(body.get("messages"))
    elif kind == "completion":
        if "prompt" not in body:
            raise _bad("'prompt' is required", "prompt", "missing_prompt")
        tokens = _prompt_tokens(body["prompt"], "prompt")
    else:
        if "input" not in body:
            raise _bad("'input' is required", "input", "missing_input")
        tokens = _prompt_tokens(body["input"], "input")
    limit_name = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    max_tokens = _expect(body, limit_name, (int,), "an integer")
    if max_tokens is not None and max_tokens < 1:
        raise _bad(f"'{limit_name}' must be at least 1", limit_name)
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = _expect(body, name, (int, float), "a number")
        if value is not None and not low <= value <= high:
            raise _bad(f"'{name}' must be between {low:g} and {high:g}; found {value}", name)
    n = _expect(body, "n", (int,), "an integer")
    if n is not None and n != 1:
        raise _bad("only n=1 is supported", "n")
    if kind != "embedding":
        _check_generation_options(body)
    options = _expect(body, "stream_options", (dict,), "an object") or {}
    metadata = _expect(body, "metadata", (dict,), "an object") or {}
    data_class = metadata.get("data_class")
    if data_class is not None and not isinstance(data_class, str):
        raise _bad("'metadata.data_class' must be a string", "metadata.data_class", "invalid_type")
    output = 0 if kind == "embedding" else max_tokens or DEFAULT_MAX_OUTPUT_TOKENS
    return ParsedRequest(
        kind=kind,
        body=body,
        model=model,
        stream=bool(stream),
        prompt_tokens=len(tokens),
        max_output_tokens=output,
        block_hashes=tuple(block_hashes(tokens, index_block_tokens)),
        include_usage=bool(options.get("include_usage")),
        data_class=data_class,
    )
