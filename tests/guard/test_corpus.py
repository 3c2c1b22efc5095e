"""The security corpus split: three sides, fixed by hash, a group never straddles two."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from isthmus.guard.corpus import (
    HELD_OUT_PLANTING,
    TEST_FRACTION,
    VALIDATION_FRACTION,
    SecurityCorpus,
    load_corpus,
    planted_contexts,
    split_of,
)


@pytest.fixture(scope="module")
def corpus() -> SecurityCorpus:
    return load_corpus()


def test_split_is_a_pure_function_of_dataset_and_group() -> None:
    sides = [split_of("wildguard", f"prompt {i}") for i in range(4000)]
    assert sides == [split_of("wildguard", f"prompt {i}") for i in range(4000)]
    share = Counter(sides)
    assert abs(share["validation"] / 4000 - VALIDATION_FRACTION) < 0.03
    assert abs(share["test"] / 4000 - TEST_FRACTION) < 0.03


def test_every_group_falls_wholly_on_one_side(corpus: SecurityCorpus) -> None:
    sides: dict[tuple[str, str], set[str]] = defaultdict(set)
    for example in corpus.prompts:
        sides[(example.dataset.split("/")[0], example.group)].add(example.split)
    assert all(len(s) == 1 for s in sides.values())
    assert {e.split for e in corpus.prompts} == {"train", "validation", "test"}


def test_held_out_planting_never_mixes_sides(corpus: SecurityCorpus) -> None:
    for side in ("validation", "test"):
        planted = planted_contexts(corpus, side, **HELD_OUT_PLANTING)
        assert planted and all(a.split == side and c.split == side for _, a, c in planted)
        assert all(a.text in text and c.text.strip()[:20] in text for text, a, c in planted)


def test_everyday_traffic_is_split_by_template(corpus: SecurityCorpus) -> None:
    sides: dict[str, set[str]] = defaultdict(set)
    for example in corpus.everyday:
        assert example.label == 0 and example.dataset == "everyday"
        sides[example.group].add(example.split)
    assert len(corpus.everyday) >= 300 and all(len(s) == 1 for s in sides.values())
    assert all(corpus.everyday_in(side) for side in ("train", "validation", "test"))
