"""Every shortcut the guard takes on short or plain texts gives what the full path gives.

The shortcut: n-gram buckets through one matrix product for short documents. It is checked
against the full path over the guard's evaluation texts (the security corpus and the PII
sentences ``bench/guard_eval.py`` scores) and over generated texts.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

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
