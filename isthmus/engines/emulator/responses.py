"""Response bodies and SSE chunks in OpenAI's format; deterministic filler text and embeddings.

Invariants: output text is a pure function of (seed, token count) — the same prompt gets the
same answer, like sampling at temperature 0 — and each filler word is exactly one approximate
token, so ``count_tokens(text) == completion_tokens``. Stream chunks are pre-rendered byte
templates (one ``orjson.dumps`` of the token text per chunk), because a stream costs one chunk
per token. Embeddings are hashed bags of tokens, L2-normalised: deterministic, and texts sharing
words have a positive cosine similarity.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import os
import struct
import time
from typing import Any

import orjson

from isthmus.engines.emulator.protocol import Generation
from isthmus.engines.timing import Usage

__all__ = [
    "DONE",
    "ResponseIds",
    "StreamChunks",
    "completion_body",
    "embeddings_body",
    "filler_token",
    "pseudo_embedding",
    "usage_dict",
]

DONE = b"data: [DONE]\n\n"

_FILLER = (
    "the", "engine", "emulates", "a", "model", "that", "answers", "with", "tokens", "at",
    "modelled", "times", "while", "its", "queue", "and", "cache", "shape", "latency", "for",
    "every", "request", "routed", "across", "sites", "so", "clients", "see", "real", "effects",
    "of", "load",
)  # fmt: skip


def filler_token(seed: int, index: int) -> str:
    """Output token ``index`` (0-based) of a response seeded by ``seed``."""
    word = _FILLER[(seed + index) % len(_FILLER)]
    return word if index == 0 else " " + word


def filler_text(seed: int, count: int) -> str:
    return "".join(filler_token(seed, i) for i in range(count))


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


class ResponseIds:
    """Unique response ids: a random per-process prefix and a counter (cheaper than uuid4)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = 0

    def next(self) -> str:
        self._counter += 1
        return f"{self._prefix}{self._counter:x}"


def completion_body(
    gen: Generation, rid: str, text: str, finish_reason: str, usage: Usage
) -> bytes:
    """A non-streamed chat.completion or text_completion."""
    created = int(time.time())
    choice: dict[str, Any]
    if gen.kind == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        obj, prefix = "chat.completion", "chatcmpl-"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        obj, prefix = "text_completion", "cmpl-"
    return orjson.dumps(
        {
            "id": prefix + rid,
            "object": obj,
            "created": created,
            "model": gen.model,
            "choices": [choice],
            "usage": usage_dict(usage),
        }
    )


class StreamChunks:
    """Byte templates for one streamed response's SSE chunks."""

    __slots__ = ("_chat", "_head", "_rid", "_tail", "_usage_null", "model")

    def __init__(self, gen: Generation, rid: str) -> None:
        self._chat = gen.kind == "chat"
        self.model = gen.model
        created = int(time.time())
        self._rid = ("chatcmpl-" if self._chat else "cmpl-") + rid
        obj = "chat.completion.chunk" if self._chat else "text_completion"
        head = (
            f'data: {{"id":"{self._rid}","object":"{obj}","created":{created},"model":'
        ).encode() + orjson.dumps(gen.model)
        self._head = head + (
            b',"choices":[{"index":0,"delta":{' if self._chat else b',"choices":[{"index":0,"text":'
        )
        self._usage_null = b',"usage":null' if gen.include_usage else b""
        self._tail = b',"logprobs":null,"finish_reason":null}]' + self._usage_null + b"}\n\n"

    def token(self, text: str, first: bool) -> bytes:
        body = orjson.dumps(text)
        if not self._chat:
            return self._head + body + self._tail
        role = b'"role":"assistant","content":' if first else b'"content":'
        return self._head + role + body + b"}" + self._tail

    def finish(self, reason: str) -> bytes:
        mid = b"}" if self._chat else b'""'
        return (
            self._head + mid + b',"logprobs":null,"finish_reason":"' + reason.encode() + b'"}]'
            + self._usage_null + b"}\n\n"
        )  # fmt: skip

    def usage(self, usage: Usage, created: int | None = None) -> bytes:
        obj = "chat.completion.chunk" if self._chat else "text_completion"
        chunk = {
            "id": self._rid,
            "object": obj,
            "created": created if created is not None else int(time.time()),
            "model": self.model,
            "choices": [],
            "usage": usage_dict(usage),
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


@functools.lru_cache(maxsize=65_536)
def _feature(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def pseudo_embedding(tokens: list[str], dim: int) -> list[float]:
    """A unit vector: each token adds +-1 to the coordinate its hash picks (feature hashing)."""
    vec = [0.0] * dim
    for token in tokens:
        h = _feature(token)
        vec[h % dim] += 1.0 if h >> 63 else -1.0
    norm = math.sqrt(sum(x * x for x in vec))
    if norm == 0.0:
        vec[0], norm = 1.0, 1.0
    return [x / norm for x in vec]


def embeddings_body(model: str, vectors: list[list[float]], as_base64: bool, tokens: int) -> bytes:
    data: list[dict[str, Any]] = []
    for i, vec in enumerate(vectors):
        emb: list[float] | str = vec
        if as_base64:
            emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
