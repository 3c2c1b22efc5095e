"""An approximate tokenizer and prefix-block hashes shared by the gateway, emulator and simulator.

Invariants:

- :func:`approx_tokens` is deterministic and model-independent: one token per run of word
  characters and one per other non-space character (``"Hello, world!"`` -> 4 tokens). It is
  about one token per English word, close enough to a BPE count for latency and cost models, and
  fast (one compiled regex).
- :func:`block_hashes` is *chained* like vLLM's automatic prefix caching: the hash of block
  ``i`` covers blocks ``0..i``, so two prompts share the hash of block ``i`` exactly when they
  share their first ``(i + 1) * block_tokens`` tokens. Hashes are unsigned 64-bit BLAKE2b
  digests, stable across processes and machines (Python's ``hash()`` of ``str`` is salted per
  process and could not be shared between a gateway's prefix index and an engine).
- :func:`synthetic_block_text` gives each Mooncake-trace ``hash_id`` a fixed text of exactly
  ``block_tokens`` approximate tokens, so requests sharing ``hash_ids`` share identical text
  prefixes and therefore identical :func:`block_hashes` at any block size that divides the
  trace's block size.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "approx_tokens",
    "block_hashes",
    "chat_prompt_tokens",
    "count_tokens",
    "prompt_from_hash_ids",
    "synthetic_block_text",
]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_SEP = b"\x1f"  # unit separator: cannot occur inside a token (tokens hold no whitespace)
_ROOT = b"isthmus-prefix-v1"

# 4,900 pronounceable pseudo-words (consonant-vowel-consonant-vowel); each is one approximate
# token, and none starts with "h", so they never collide with the "h<id>" block names.
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_VOCAB: tuple[str, ...] = tuple(
    a + b + c + d for a in _CONSONANTS for b in _VOWELS for c in _CONSONANTS for d in _VOWELS
)


def approx_tokens(text: str) -> list[str]:
    """Split ``text`` into approximate tokens: words and single punctuation characters."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    """The number of :func:`approx_tokens` in ``text``."""
    return len(_TOKEN_RE.findall(text))


def block_hashes(tokens: Sequence[str], block_tokens: int) -> list[int]:
    """Chained 64-bit hashes of the *full* blocks of ``tokens`` (a partial last block has none).

    ``h[i] = blake2b(h[i-1] || block i's tokens)``, with a fixed root before block 0.
    """
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
    out: list[int] = []
    parent = _ROOT
    blake2b = hashlib.blake2b
    for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
        block = "\x1f".join(tokens[start : start + block_tokens]).encode()
        parent = blake2b(parent + _SEP + block, digest_size=8).digest()
        out.append(int.from_bytes(parent, "little"))
    return out


def _content_text(content: Any) -> str:
    """The text of a chat message's ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return "\n".join(parts)
    return ""


def chat_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """Approximate tokens of a chat prompt, as an engine would see it after its chat template.

    Each message contributes a role marker token (``<user>``; the tokenizer never produces a
    token containing ``<`` and a letter, so markers cannot collide with content) and its text
    content. Appending a message to a conversation appends tokens, so multi-turn conversations
    share their earlier turns' prefix blocks.
    """
    out: list[str] = []
    for message in messages:
        out.append(f"<{message.get('role', 'user')}>")
        out.extend(_TOKEN_RE.findall(_content_text(message.get("content"))))
        name = message.get("name")
        if isinstance(name, str):
            out.extend(_TOKEN_RE.findall(name))
    return out


@functools.lru_cache(maxsize=4096)  # ~15 MB of 512-token blocks; traces reuse recent ids
def synthetic_block_text(hash_id: int, block_tokens: int = 512) -> str:
    """Deterministic text of exactly ``block_tokens`` approximate tokens for a trace ``hash_id``.

    The first token names the hash id (``h42``), so distinct ids never produce the same text;
    the rest are pseudo-words drawn from a PRNG seeded by the id.
    """
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
    rng = random.Random(hash_id)
    words = [f"h{hash_id}", *rng.choices(_VOCAB, k=block_tokens - 1)]
    return " ".join(words)


def prompt_from_hash_ids(
    hash_ids: Sequence[int], input_length: int, block_tokens: int = 512
) -> str:
    """A prompt of exactly ``input_length`` approximate tokens built from trace block ids.

    Block ``i`` of the prompt is ``synthetic_block_text(hash_ids[i])``; the last block is cut to
    the input length, as in Mooncake traces (``len(hash_ids) == ceil(input_length / 512)``).
    """
    if input_length < 0:
        raise ValueError(f"input_length must be >= 0, got {input_length}")
    if input_length > len(hash_ids) * block_tokens:
        raise ValueError(
            f"input_length {input_length} needs {-(-input_length // block_tokens)} blocks of "
            f"{block_tokens} tokens but only {len(hash_ids)} hash_ids were given"
        )
    parts: list[str] = []
    remaining = input_length
    for hash_id in hash_ids:
        if remaining <= 0:
            break
        text = synthetic_block_text(hash_id, block_tokens)
        if remaining < block_tokens:
            text = " ".join(text.split(" ", remaining)[:remaining])
        parts.append(text)
        remaining -= block_tokens
    return " ".join(parts)
