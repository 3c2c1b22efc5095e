"""Hashed character n-gram features, in numpy, identical at training and at inference.

A text is lower-cased, its digits folded to ``0``, and every character n-gram of the sizes in
``FeatureSpec.ngram_sizes`` is hashed into one of ``2**bits`` buckets. The hash is a
polynomial over code points, wrapping modulo 2**64, finished by a multiplicative (Fibonacci)
mix whose top ``bits`` bits are the bucket. It never uses Python's ``hash()`` (salted per
process), so a model trained by ``scripts/train_guard.py`` scores the same in every process.

A document's feature vector is binary — 1 for each distinct bucket it hits — divided by the
square root of its number of distinct buckets (unit length). ``segment_buckets`` computes the
distinct buckets of every sentence of a document in one vectorised pass, which is what lets
the context direction score each sentence of a retrieved document (where an injected
instruction hides) at almost the cost of scoring the whole document once.

Two ways to the same hashes: size by size (``_ngram_hashes``, each size grown from the one
shorter: cheapest on long texts) and, for short documents — a chat prompt of a few words, where
the fixed cost of each array operation dominates — one matrix product over the text's windows
(``_window_buckets``). Both compute the documented hash exactly (integer arithmetic modulo
2**64), so a document's buckets do not depend on the way taken.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "FeatureSpec",
    "document_buckets",
    "featurize",
    "segment_buckets",
    "view_for_features",
]

_PRIME = np.uint64(1_099_511_628_211)  # FNV-64 prime: odd, well spread
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_DIGITS = str.maketrans("0123456789", "0000000000")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """How text becomes bucket ids; stored beside a model's weights so both always agree."""

    bits: int = 18
    ngram_sizes: tuple[int, ...] = (2, 3, 4, 5)

    def as_dict(self) -> dict[str, object]:
        return {"bits": self.bits, "ngram_sizes": list(self.ngram_sizes)}


def view_for_features(text: str) -> str:
    """Lower-case with digits folded; the same length as ``text`` (offsets stay valid)."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower-case to two; keep offsets aligned
        lowered = "".join(c.lower()[0] for c in text)
    return lowered.translate(_DIGITS)


@functools.cache
def _seed(size: int) -> np.uint64:
    """``size * P**size`` modulo 2**64: an n-gram hash's start value, carried through it."""
    return np.uint64(size * pow(int(_PRIME), size, 1 << 64) % (1 << 64))


def _ngram_hashes(view: str, sizes: tuple[int, ...]) -> dict[int, npt.NDArray[np.uint64]]:
    """The hash of every n-gram of ``view`` of each size in ``sizes`` (sizes longer than the
    view have none), by start offset: ``size * P**size + sum(code[i+k] * P**(size-1-k))``
    modulo 2**64 — what starting from ``size`` and folding in one code at a time (``h * P +
    code``) gives. Each size is grown from the size one shorter, so this is a few array
    operations however many sizes there are."""
    codes = np.frombuffer(view.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = codes.shape[0]
    out: dict[int, npt.NDArray[np.uint64]] = {}
    grown = codes
    for size in range(1, max(sizes, default=0) + 1):
        if size > n:
            break
        if size > 1:
            grown = grown[: n - size + 1] * _PRIME + codes[size - 1 :]
        if size in sizes:
            out[size] = grown + _seed(size)
    return out


def featurize(
    text: str, spec: FeatureSpec
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Bucket id, start offset and end offset of every n-gram of ``view_for_features(text)``."""
    hashes = _ngram_hashes(view_for_features(text), spec.ngram_sizes)
    shift = np.uint64(64 - spec.bits)
    buckets: list[npt.NDArray[np.int64]] = []
    starts: list[npt.NDArray[np.int64]] = []
    ends: list[npt.NDArray[np.int64]] = []
    for size in spec.ngram_sizes:
        hashed = hashes.get(size)
        if hashed is None:
            continue
        buckets.append(((hashed * _GOLDEN) >> shift).astype(np.int64))
        positions = np.arange(hashed.shape[0], dtype=np.int64)
        starts.append(positions)
        ends.append(positions + size)
    if not buckets:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(buckets), np.concatenate(starts), np.concatenate(ends)


WINDOW_MAX_CHARS = 256
"""Documents up to this many characters (framing newlines included) are hashed by
``_window_buckets``: 13 µs instead of 21 at 20 characters, 31 instead of 49 at 254 (one core,
``bench/guard_request_cost.py``'s machine); size by size wins past about 500."""


@dataclass(frozen=True, slots=True)
class _WindowHash:
    """A spec's hash as one matrix product over windows of ``width`` codes.

    Row ``i`` of the windows is ``codes[i : i + width]`` (zero-padded past the end). Column
    ``j`` of ``coefficients`` holds, for size ``s = ngram_sizes[j]``, ``P**(s-1-k) * GOLDEN``
    for code ``k < s`` and 0 beyond, and ``offsets[j]`` is ``seed(s) * GOLDEN``; so
    ``windows @ coefficients + offsets`` is ``(hash * GOLDEN) mod 2**64`` of the n-gram of size
    ``s`` at ``i`` (multiplication distributes modulo 2**64), and its top ``bits`` bits are the
    bucket. ``ends[i, j] = i + s``: an n-gram is real only if it ends within the text.
    """

    width: int
    coefficients: npt.NDArray[np.uint64]
    offsets: npt.NDArray[np.uint64]
    ends: npt.NDArray[np.int64]
    shift: np.uint64


@functools.cache
def _window_hash(spec: FeatureSpec) -> _WindowHash:
    sizes = spec.ngram_sizes
    width = max(sizes)
    mask = (1 << 64) - 1
    coefficients = np.zeros((width, len(sizes)), dtype=np.uint64)
    for j, size in enumerate(sizes):
        for k in range(size):
            coefficients[k, j] = pow(int(_PRIME), size - 1 - k, 1 << 64) * int(_GOLDEN) & mask
    offsets = np.array([int(_seed(s)) * int(_GOLDEN) & mask for s in sizes], dtype=np.uint64)
    starts = np.arange(WINDOW_MAX_CHARS, dtype=np.int64)[:, None]
    ends = starts + np.array(sizes, dtype=np.int64)[None, :]
    return _WindowHash(width, coefficients, offsets, ends, np.uint64(64 - spec.bits))


def _window_buckets(view: str, spec: FeatureSpec) -> npt.NDArray[np.uint64]:
    """The bucket of every n-gram of ``view`` (at most ``WINDOW_MAX_CHARS``), in no order."""
    plan = _window_hash(spec)
    n = len(view)
    padded = (view + "\0" * (plan.width - 1)).encode("utf-32-le")
    codes = np.frombuffer(padded, dtype=np.uint32).astype(np.uint64)
    # a view, not a copy: row i starts at code i and reads the next `width` codes
    windows = np.ndarray((n, plan.width), np.uint64, codes, 0, (8, 8))
    mixed = windows @ plan.coefficients
    mixed += plan.offsets
    mixed >>= plan.shift
    result: npt.NDArray[np.uint64] = mixed[plan.ends[:n] <= n]
    return result


def _distinct_sorted(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """``np.unique(values)`` as int64, without its fixed cost (short arrays only)."""
    values.sort()
    keep = np.empty(values.shape[0], dtype=bool)
    keep[:1] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep].astype(np.int64)


def document_buckets(text: str, spec: FeatureSpec) -> npt.NDArray[np.int64]:
    """The distinct buckets of one document (framed by newlines, as segments are): those of
    ``featurize``, without positions, sorted."""
    view = view_for_features("\n" + text + "\n")
    if len(view) <= WINDOW_MAX_CHARS and spec.ngram_sizes:
        return _distinct_sorted(_window_buckets(view, spec))
    hashes = _ngram_hashes(view, spec.ngram_sizes)
    if not hashes:
        return np.zeros(0, dtype=np.int64)
    parts = list(hashes.values())
    hashed = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return np.unique(((hashed * _GOLDEN) >> np.uint64(64 - spec.bits)).astype(np.int64))


def segment_buckets(
    text: str, spans: list[tuple[int, int]], spec: FeatureSpec
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Distinct (segment index, bucket) pairs of each span of ``text``, in one pass.

    Gives, for every span, exactly the buckets ``document_buckets`` gives for that span's text
    alone: the spans are joined with newlines, and an n-gram counts for the segment it starts
    in (or the newline before it) if it does not run past the newline after it.
    """
    pieces = [text[s:e].replace("\n", " ") for s, e in spans]
    joined = "\n" + "\n".join(pieces) + "\n"
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    firsts = np.concatenate(([1], 1 + np.cumsum(lengths + 1)[:-1])) if len(pieces) else lengths
    buckets, starts, ends = featurize(joined, spec)
    segment = np.searchsorted(firsts - 1, starts, side="right") - 1
    keep = ends <= firsts[segment] + lengths[segment] + 1
    keys = np.unique(segment[keep] * (1 << spec.bits) + buckets[keep])
    return keys >> spec.bits, keys & ((1 << spec.bits) - 1)
