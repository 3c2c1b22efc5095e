"""Parse and validate OpenAI request bodies; errors in OpenAI's shape.

Invariant: a body either parses into a :class:`Generation` / :class:`EmbeddingJob` that the
engine can run (model served here, prompt plus output within the context) or raises
:class:`ApiError` carrying the HTTP status and the ``{"error": {...}}`` body OpenAI and vLLM
would send, so clients' error handling is exercised for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from isthmus.engines.emulator.config import EmulatorConfig
from isthmus.engines.tokens import approx_tokens, chat_prompt_tokens

__all__ = ["ApiError", "EmbeddingJob", "Generation", "parse_embeddings", "parse_generation"]

Kind = Literal["chat", "completion"]


class ApiError(Exception):
    """An error response: status plus OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )


@dataclass(frozen=True, slots=True)
class Generation:
    """A chat or text completion request, reduced to what the engine needs."""

    kind: Kind
    model: str
    tokens: list[str]
    max_tokens: int
    limited: bool  # max_tokens came from the client: finishing on it is "length"
    stream: bool
    include_usage: bool


@dataclass(frozen=True, slots=True)
class EmbeddingJob:
    model: str
    inputs: list[list[str]]
    dimensions: int
    base64: bool


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"We could not parse the JSON body of your request ({exc}). The OpenAI API "
            "expects a JSON payload.",
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def _model(data: dict[str, Any], config: EmulatorConfig) -> str:
    model = data.get("model")
    if model is None:
        raise ApiError(400, "You must provide a model parameter.", param="model")
    if not isinstance(model, str):
        raise ApiError(400, "'model' must be a string.", param="model")
    if model not in config.served_names:
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it. "
            f"This endpoint serves `{config.model}`.",
            param="model",
            code="model_not_found",
        )
    return model


def _int_param(data: dict[str, Any], name: str, low: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ApiError(400, f"'{name}' must be an integer >= {low}, got {value!r}.", param=name)
    return value


def _prompt_tokens(data: dict[str, Any], kind: Kind) -> list[str]:
    if kind == "chat":
        messages = data.get("messages")
        if messages is None:
            raise ApiError(400, "Missing required parameter: 'messages'.", param="messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
        ):
            raise ApiError(
                400,
                "'messages' must be a non-empty array of objects, each with a 'role'.",
                param="messages",
            )
        return chat_prompt_tokens(messages)
    prompt = data.get("prompt")
    if prompt is None:
        raise ApiError(400, "Missing required parameter: 'prompt'.", param="prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return approx_tokens(prompt)
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return [f"#{t}" for t in prompt]  # token ids: each one token
    raise ApiError(
        400,
        "'prompt' must be a string, an array of token ids, or an array holding one of them "
        "(the emulator serves one prompt per request).",
        param="prompt",
    )


def parse_generation(body: bytes, kind: Kind, config: EmulatorConfig) -> Generation:
    """Validate a ``/v1/chat/completions`` or ``/v1/completions`` body."""
    data = _load(body)
    model = _model(data, config)
    tokens = _prompt_tokens(data, kind)
    n = _int_param(data, "n", 1)
    if n is not None and n > 1:
        raise ApiError(400, "The emulator serves n=1 only.", param="n")
    requested = _int_param(data, "max_completion_tokens", 1)
    if requested is None:
        requested = _int_param(data, "max_tokens", 1)
    stream = data.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ApiError(400, "'stream' must be a boolean.", param="stream")
    options = data.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    prompt_len = len(tokens)
    if prompt_len < 1:
        prompt_len = 1
        tokens = ["<empty>"]
    limit = config.max_model_len
    default = 16 if kind == "completion" else config.default_max_tokens
    max_tokens = requested if requested is not None else max(1, min(default, limit - prompt_len))
    if prompt_len + max_tokens > limit:
        where = "messages" if kind == "chat" else "prompt"
        raise ApiError(
            400,
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_len + max_tokens} tokens ({prompt_len} in the {where}, {max_tokens} in "
            f"the completion). Please reduce the length of the {where} or completion.",
            param=where,
            code="context_length_exceeded",
        )
    return Generation(
        kind, model, tokens, max_tokens, requested is not None, bool(stream), include_usage
    )


def parse_embeddings(body: bytes, config: EmulatorConfig) -> EmbeddingJob:
    """Validate a ``/v1/embeddings`` body (input: string, array of strings, token ids)."""
    data = _load(body)
    model = _model(data, config)
    raw = data.get("input")
    if raw is None:
        raise ApiError(400, "Missing required parameter: 'input'.", param="input")
    items: list[Any] = raw if isinstance(raw, list) else [raw]
    if items and all(isinstance(t, int) for t in items):
        items = [items]  # one input given as token ids
    inputs: list[list[str]] = []
    for item in items:
        if isinstance(item, str):
            inputs.append(approx_tokens(item) or ["<empty>"])
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            inputs.append([f"#{t}" for t in item])
        else:
            raise ApiError(
                400,
                "'input' must be a string, an array of strings, or token ids.",
                param="input",
            )
    if not inputs:
        raise ApiError(400, "'input' must not be empty.", param="input")
    for tokens in inputs:
        if len(tokens) > config.max_model_len:
            raise ApiError(
                400,
                f"This model's maximum context length is {config.max_model_len} tokens. "
                f"However, an input has {len(tokens)} tokens.",
                param="input",
                code="context_length_exceeded",
            )
    dims = _int_param(data, "dimensions", 1) or config.embedding_dim
    fmt = data.get("encoding_format", "float")
    if fmt not in ("float", "base64", None):
        raise ApiError(
            400, "'encoding_format' must be 'float' or 'base64'.", param="encoding_format"
        )
    return EmbeddingJob(model, inputs, dims, fmt == "base64")
