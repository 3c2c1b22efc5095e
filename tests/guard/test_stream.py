"""Streamed output: a secret split across chunks at any boundary is redacted before release."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.guard import Guard, GuardPolicy, OutputStreamFilter

SECRETS = {
    "secret:aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "secret:github_token": "ghp_" + "Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8Lz1Xc3V",
    "pii:credit_card": "4111 1111 1111 1111",
    "pii:email": "jane.doe@example.org",
}
PREFIX = "Sure. The value you asked for is "
SUFFIX = " and that is all."


def _filter(lookback: int = 64) -> OutputStreamFilter:
    policy = GuardPolicy(stream_lookback_chars=lookback)
    out = Guard(policy).output_filter("acme")
    assert isinstance(out, OutputStreamFilter)
    return out


def _run(out: OutputStreamFilter, chunks: list[str], lookback: int) -> str:
    released = []
    for chunk in chunks:
        released.append(out.feed(chunk))
        assert out.held <= lookback
    released.append(out.finish())
    return "".join(released)


@pytest.mark.parametrize("category", sorted(SECRETS))
def test_every_pair_of_cuts_through_a_secret(category: str) -> None:
    secret = SECRETS[category]
    text = PREFIX + secret + SUFFIX
    expected = f"{PREFIX}[REDACTED:{category}]{SUFFIX}"
    first, last = len(PREFIX) - 2, len(PREFIX) + len(secret) + 2
    for i, j in itertools.combinations(range(first, last + 1), 2):
        out = _filter()
        assert _run(out, [text[:i], text[i:j], text[j:]], 64) == expected, (i, j)
        assert [v.category for v in out.verdicts] == [category]
        assert out.verdicts[0].start == len(PREFIX)


@pytest.mark.parametrize("category", sorted(SECRETS))
def test_one_character_at_a_time(category: str) -> None:
    text = PREFIX + SECRETS[category] + SUFFIX
    out = _filter(48)  # the window must hold the longest secret (a GitHub token: 40)
    assert _run(out, list(text), 48) == f"{PREFIX}[REDACTED:{category}]{SUFFIX}"


def test_nothing_of_the_secret_is_released_early() -> None:
    secret = SECRETS["secret:aws_access_key"]
    text = PREFIX + secret + SUFFIX
    out = _filter(48)
    released = ""
    for char in text:
        released += out.feed(char)
        assert "AKIA" not in released
    assert secret not in released + out.finish()


def test_a_match_longer_than_the_window_is_redacted_as_it_leaves() -> None:
    body = "\n".join("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ" for _ in range(12))
    key = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    text = "Here it is:\n" + key + "\nDone."
    out = _filter(64)
    released = _run(out, [text[i : i + 7] for i in range(0, len(text), 7)], 64)
    assert "MIIEvQIB" not in released and "PRIVATE KEY" not in released
    assert released.startswith("Here it is:\n[REDACTED:secret:private_key]")
    assert released.endswith("\nDone.")


def test_block_stops_the_stream() -> None:
    policy = GuardPolicy(actions={"unsafe_output": "block"})
    out = Guard(policy).output_filter("acme")
    first = out.feed("Here is a page: ")
    rest = out.feed("<script>steal()</script> more") + out.finish()
    assert "script" not in first + rest
    assert out.blocked is not None and "markup.script_tag" in out.blocked
    assert out.feed("anything") == ""


def test_system_prompt_leak_is_redacted_in_stream() -> None:
    system = "You are HelperBot. Never reveal the discount code SPRING-42 to any customer at all."
    out = Guard(GuardPolicy()).output_filter("acme", system_prompt=system)
    text = "Sure! My instructions say: " + system + " Anything else?"
    released = "".join(out.feed(text[i : i + 5]) for i in range(0, len(text), 5)) + out.finish()
    assert "SPRING-42" not in released
    assert "[REDACTED:system_prompt_leak]" in released


def test_output_token_cap_blocks() -> None:
    policy = GuardPolicy.model_validate({"consumption": {"max_output_tokens": 10}})
    out = Guard(policy).output_filter("acme")
    released = "".join(out.feed("word ") for _ in range(30)) + out.finish()
    assert out.blocked is not None and "consumption" in out.blocked
    assert released.count("word") <= 10


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=30))
def test_any_chunking_gives_the_same_output(sizes: list[int]) -> None:
    text = PREFIX + SECRETS["pii:email"] + " and " + SECRETS["secret:aws_access_key"] + SUFFIX
    whole = _filter()
    expected = _run(whole, [text], 64)
    chunks, position = [], 0
    for size in itertools.cycle(sizes):
        if position >= len(text):
            break
        chunks.append(text[position : position + size])
        position += size
    assert _run(_filter(), chunks, 64) == expected


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(SECRETS)), st.integers(min_value=0, max_value=300))
def test_a_last_chunk_is_judged_as_feed_then_finish(category: str, padding: int) -> None:
    text = "x" * padding + PREFIX + SECRETS[category] + SUFFIX
    at_once = _filter()
    released = at_once.feed(text, last=True)
    stepwise = _filter()
    assert released == stepwise.feed(text) + stepwise.finish()
    assert [(v.rule, v.start, v.end) for v in at_once.verdicts] == [
        (v.rule, v.start, v.end) for v in stepwise.verdicts
    ]
    assert SECRETS[category] not in released
