from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from isthmus.engines.tokens import (
    approx_tokens,
    block_hashes,
    chat_prompt_tokens,
    count_tokens,
    prompt_from_hash_ids,
    synthetic_block_text,
)


def test_words_and_punctuation_are_tokens() -> None:
    assert approx_tokens("Hello, world! It's 42.") == [
        "Hello",
        ",",
        "world",
        "!",
        "It",
        "'",
        "s",
        "42",
        ".",
    ]
    assert count_tokens("  ") == 0
    assert count_tokens("one two  three\nfour") == 4


def test_block_hashes_are_chained_and_stable() -> None:
    tokens = [f"t{i}" for i in range(40)]
    hashes = block_hashes(tokens, 16)
    assert len(hashes) == 2  # the partial third block has no hash
    assert hashes == block_hashes(tokens[:32], 16)
    # a change in block 0 changes every later hash (chained), a change in block 1 only block 1
    changed0 = block_hashes(["x", *tokens[1:]], 16)
    changed1 = block_hashes([*tokens[:20], "x", *tokens[21:]], 16)
    assert changed0[0] != hashes[0] and changed0[1] != hashes[1]
    assert changed1[0] == hashes[0] and changed1[1] != hashes[1]
    assert all(0 <= h < 2**64 for h in hashes)


def test_block_hashes_known_value_is_stable() -> None:
    # if this changes, every deployed prefix index must be rebuilt: bump the root instead
    assert block_hashes(["hello", "world"], 2) == [11231153865515771769]


def test_same_tokens_different_block_boundaries_do_not_collide() -> None:
    assert block_hashes(["ab", "c"], 1) != block_hashes(["a", "bc"], 1)


@given(st.integers(0, 2**40), st.integers(1, 600))
def test_synthetic_block_has_exact_token_count(hash_id: int, block_tokens: int) -> None:
    text = synthetic_block_text(hash_id, block_tokens)
    assert count_tokens(text) == block_tokens
    assert synthetic_block_text(hash_id, block_tokens) == text


def test_distinct_hash_ids_give_distinct_text() -> None:
    assert synthetic_block_text(1, 8) != synthetic_block_text(2, 8)


@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=6),
    st.lists(st.integers(0, 50), min_size=1, max_size=6),
    st.data(),
)
def test_trace_prompts_share_prefix_blocks_exactly_when_hash_ids_do(
    a: list[int], b: list[int], data: st.DataObject
) -> None:
    bt = 32
    len_a = data.draw(st.integers(1, len(a) * bt))
    len_b = data.draw(st.integers(1, len(b) * bt))
    ta = approx_tokens(prompt_from_hash_ids(a, len_a, bt))
    tb = approx_tokens(prompt_from_hash_ids(b, len_b, bt))
    assert len(ta) == len_a and len(tb) == len_b
    shared_ids = 0
    while shared_ids < min(len(a), len(b)) and a[shared_ids] == b[shared_ids]:
        shared_ids += 1
    ha, hb = block_hashes(ta, 16), block_hashes(tb, 16)
    common = 0
    while common < min(len(ha), len(hb)) and ha[common] == hb[common]:
        common += 1
    full_shared = min(shared_ids * bt, len_a, len_b) // 16
    assert common >= full_shared
    if shared_ids < min(len(a), len(b)):
        # the first differing trace block differs in its first token (h<id>)
        assert common <= math.ceil((shared_ids * bt + 1) / 16)


def test_prompt_needs_enough_hash_ids() -> None:
    try:
        prompt_from_hash_ids([1], 513, 512)
    except ValueError as exc:
        assert "needs 2 blocks" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected ValueError")


def test_chat_turns_extend_the_prompt() -> None:
    first = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    second = [
        *first,
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "more"},
    ]
    a, b = chat_prompt_tokens(first), chat_prompt_tokens(second)
    assert b[: len(a)] == a
    assert a == ["<system>", "be", "brief", "<user>", "hi"]
    parts = [{"role": "user", "content": [{"type": "text", "text": "x y"}, {"type": "image_url"}]}]
    assert chat_prompt_tokens(parts) == ["<user>", "x", "y"]
