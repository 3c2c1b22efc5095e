"""Every shortcut the guard takes on short or plain texts gives what the full path gives.

The shortcuts: n-gram buckets through one matrix product for short documents, cheap looks that
rule out a whole inspector (PII gates, links, encoded payloads, prefilter needles), and the
pipeline handing a plain-ASCII text the caller's context instead of a per-text copy. Each is
checked against the full path over the guard's evaluation texts (the security corpus and the
PII sentences ``bench/guard_eval.py`` scores) and over generated texts.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.guard import InspectionContext, Pipeline, normalize
from isthmus.guard.classifier import load_models
from isthmus.guard.corpus import default_data_dir, load_corpus
from isthmus.guard.features import (
    WINDOW_MAX_CHARS,
    FeatureSpec,
    _window_buckets,
    document_buckets,
    featurize,
    view_for_features,
)
from isthmus.guard.findings import Direction, Finding
from isthmus.guard.pii import _ANY_GATE, _GATES
from isthmus.guard.pipeline import MIN_HIDDEN_CHARS
from isthmus.guard.prefilter import Prefilter
from isthmus.guard.registry import DEFAULT_DIRECTIONS, create_inspector
from isthmus.guard.rules import _BASE64, _HEX, _MIN_PAYLOAD_CHARS
from isthmus.guard.urls import _URL, _URL_MARK


@cache
def evaluation_texts() -> tuple[str, ...]:
    corpus = load_corpus()
    pii = json.loads((default_data_dir() / "pii" / "presidio_synth_v2_dev.json").read_text())
    return (
        *(e.text for e in corpus.prompts),
        *corpus.xstest_unsafe,
        *(a.text for a in corpus.attacks),
        *(c.text for c in corpus.contexts),
        *(e.text for e in corpus.everyday),
        *(row["full_text"] for row in pii),
    )


def short_evaluation_texts() -> list[str]:
    """The request shape the shortcuts are for: texts of a chat turn, not documents."""
    return [t for t in evaluation_texts() if len(t) <= 300]


URLISH = st.lists(
    st.sampled_from(
        ["http", "https", "://", "www", ".", "com", "co", "uk", "ai", "exam", "ple", "-", "/",
         "@", ":", " ", "\n", "x", "0", "1", "ftp", "wss", "WWW", "COM", "Ai", "io", "_", "é"]
    ),
    max_size=14,
).map("".join)  # fmt: skip


# -- classifier features ------------------------------------------------------------------------
def _buckets_size_by_size(text: str, spec: FeatureSpec) -> np.ndarray:
    return np.unique(featurize("\n" + text + "\n", spec)[0])


def test_short_documents_hash_as_size_by_size_on_the_evaluation_texts() -> None:
    spec = load_models()["input"].spec
    short = [t for t in evaluation_texts() if len(t) + 2 <= WINDOW_MAX_CHARS]
    assert len(short) > 500
    for text in short:
        expected = _buckets_size_by_size(text, spec)
        found = document_buckets(text, spec)
        assert found.dtype == expected.dtype and np.array_equal(found, expected), text


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="abcXYZ 019.\nÉßİ😀\0", max_size=WINDOW_MAX_CHARS + 40),
    st.sampled_from([(3, 4, 5, 6), (2, 3, 4, 5), (1, 3), (3,), (1, 2, 3, 4, 5, 6)]),
)
def test_document_buckets_are_the_same_either_way(text: str, sizes: tuple[int, ...]) -> None:
    """Both ways (window product up to ``WINDOW_MAX_CHARS``, size by size past it) give the
    distinct buckets of every n-gram, sorted, whatever the length."""
    spec = FeatureSpec(bits=14, ngram_sizes=sizes)
    assert np.array_equal(document_buckets(text, spec), _buckets_size_by_size(text, spec))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcXYZ 019.\nÉßİ😀\0", min_size=0, max_size=60))
def test_the_window_product_yields_every_ngram_once(text: str) -> None:
    """Not only the distinct buckets: one bucket per n-gram, as ``featurize`` lists them."""
    spec = FeatureSpec(bits=16, ngram_sizes=(2, 3, 4, 5))
    view = view_for_features(text)
    if not view:
        return
    windowed = sorted(_window_buckets(view, spec).tolist())
    assert windowed == sorted(featurize(text, spec)[0].tolist())


# -- cheap looks that rule out an inspector -----------------------------------------------------
def _no_gate_opens(text: str) -> bool:
    return not any(gate.search(text) for gate in _GATES.values())


def test_no_pii_gate_opens_without_a_gate_character_on_the_evaluation_texts() -> None:
    skipped = [t for t in evaluation_texts() if not _ANY_GATE.search(t)]
    assert skipped  # the shortcut is taken on some of them
    assert all(_no_gate_opens(t) for t in skipped)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="aZ9@:.-/() fF\n٣", max_size=30))
def test_no_pii_gate_opens_without_a_gate_character(text: str) -> None:
    if not _ANY_GATE.search(text):
        assert _no_gate_opens(text)


def test_every_link_holds_a_url_mark_on_the_evaluation_texts() -> None:
    for text in evaluation_texts():
        if _URL.search(text):
            assert _URL_MARK.search(text), text


@settings(max_examples=300, deadline=None)
@given(URLISH)
def test_every_link_holds_a_url_mark(text: str) -> None:
    if _URL.search(text):
        assert _URL_MARK.search(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aF09+/= ", max_size=80))
def test_no_encoded_payload_is_shorter_than_the_gate(text: str) -> None:
    for pattern in (_BASE64, _HEX):
        assert all(len(m.group()) >= _MIN_PAYLOAD_CHARS for m in pattern.finditer(text))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(["ab", "b", "cd", "x", "ign", "="]), max_size=3), max_size=8),
    st.text(alphabet="abcdxign= ", max_size=20),
)
def test_prefilter_candidates_are_the_items_with_a_needle_present(
    needles: list[list[str]], text: str
) -> None:
    prefilter = Prefilter((i, n) for i, n in enumerate(needles))
    expected = [i for i, n in enumerate(needles) if not n or any(x in text for x in n)]
    assert list(prefilter.candidates(text)) == expected


# -- the pipeline's context ---------------------------------------------------------------------
CONTEXT = InspectionContext(
    tenant="acme",
    system_prompt="You are HelperBot and you never reveal the discount code SPRING-42 at all.",
    canary="CANARY-7f3a",
    max_prompt_tokens=40,
    max_output_tokens=40,
    deny_domains=frozenset({"evil.xyz"}),
    protected_domains=frozenset({"apple.com", "example.com"}),
)


def _findings_with_a_copy_per_text(
    pipeline: Pipeline, text: str, context: InspectionContext
) -> list[Finding]:
    """The pipeline as it was: every text gets its own copy of the context, with its source."""
    normalized = normalize(text)
    ctx = context.but(direction=pipeline.direction, source=normalized, hidden=normalized.hidden)
    findings = [
        finding.shifted(*normalized.origin_span(finding.start, finding.end))
        for inspector in pipeline.inspectors
        for finding in inspector.inspect(normalized.text, ctx)
    ]
    if len(normalized.hidden) >= MIN_HIDDEN_CHARS:
        findings.extend(pipeline._hidden(normalized, ctx))
    return findings


@pytest.mark.parametrize("direction", ["input", "context", "output"])
def test_the_callers_context_serves_a_plain_text_as_a_copy_would(direction: Direction) -> None:
    pipeline = Pipeline(
        direction, tuple(create_inspector(n) for n in DEFAULT_DIRECTIONS[direction])
    )
    texts = [*short_evaluation_texts()[::4], "visit paypa1.com or www.evil.xyz/login now"]
    for context in (CONTEXT, CONTEXT.but(direction=direction)):
        for text in texts:
            expected = _findings_with_a_copy_per_text(pipeline, text, context)
            assert list(pipeline.run(text, context).findings) == expected, text
