"""The gateway's SSE rewriting (``isthmus.gateway.sse_guard``) around the guard's stream filter.

However the upstream's bytes are cut into reads, the client gets the same bytes: each text
event re-serialised with what the filter releases for it, other events unchanged, the held-back
tail no later than the event that finishes the choice (in it when it carries text, else in one
event just before it) and before a usage-only event or ``[DONE]``, and nothing after a block.
While the stream runs, the client is never further behind than the guard's look-back.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.gateway.sse_guard import GuardedStream
from isthmus.guard import Guard, GuardPolicy

SECRET = "AKIA" + "Q3EXAMPLEKEY7H2W"
GUARD = Guard(GuardPolicy(stream_lookback_chars=48))
BLOCKING = Guard(GuardPolicy(stream_lookback_chars=48, actions={"secret": "block"}))

PIECES = st.lists(
    st.sampled_from(["Hello", " world", ". ", SECRET[:6], SECRET[6:], "é", "\n", "x" * 30, ""]),
    max_size=12,
)


def text_event(kind: str, text: str, first: bool) -> bytes:
    choice: dict[str, object] = {"index": 0, "finish_reason": None}
    if kind == "chat":
        choice["delta"] = {"role": "assistant", "content": text} if first else {"content": text}
    else:
        choice["text"] = text
    event = {"id": "r1", "object": "chunk", "created": 1, "model": "m", "choices": [choice]}
    return b"data: " + orjson.dumps(event) + b"\n\n"


def finish_event(kind: str, text: str | None) -> bytes:
    """The event that ends the choice: with the last text (as vLLM sends it) or without any
    (a chat ``delta`` of ``{}``)."""
    choice: dict[str, object] = {"index": 0, "finish_reason": "length"}
    if kind == "chat":
        choice["delta"] = {} if text is None else {"content": text}
    elif text is not None:
        choice["text"] = text
    return b"data: " + orjson.dumps({"id": "r1", "choices": [choice]}) + b"\n\n"


USAGE = b'data: {"id":"r1","choices":[],"usage":{"prompt_tokens":3}}\n\n'


def upstream(kind: str, pieces: list[str], finish_text: str | None = None) -> list[bytes]:
    """The upstream's events: text, a comment, a non-JSON line, the finish, usage, [DONE]."""
    events = [text_event(kind, piece, i == 0) for i, piece in enumerate(pieces)]
    events.insert(len(events) // 2, b": keep-alive\n\n")
    events.insert(len(events) // 2, b"data: {not json\n\n")
    return [*events, finish_event(kind, finish_text), USAGE, b"data: [DONE]\n\n"]


def sent(guard: Guard, kind: str, reads: list[bytes]) -> tuple[bytes, GuardedStream]:
    stream = GuardedStream(guard.output_filter("acme"), kind)
    return b"".join(stream.feed(read) for read in reads), stream


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    reads, position = [], 0
    for size in sizes:
        reads.append(data[position : position + size])
        position += size
    return [*reads, data[position:]]


def texts_by_event(kind: str, body: bytes) -> list[tuple[str, bytes]]:
    """(text, the event) for each event the client gets; ``""`` for events without text."""
    key = "content" if kind == "chat" else "text"
    out = []
    for raw in body.split(b"\n\n")[:-1]:
        text = ""
        if raw.startswith(b"data: {") and b'"choices":[{' in raw:
            try:
                choice = orjson.loads(raw[6:])["choices"][0]
            except orjson.JSONDecodeError:
                choice = {}
            holder = choice.get("delta", {}) if kind == "chat" else choice
            text = holder.get(key) or ""
        out.append((text, raw))
    return out


def released_text(kind: str, body: bytes) -> str:
    return "".join(text for text, _ in texts_by_event(kind, body))


@settings(max_examples=150, deadline=None)
@given(PIECES, st.lists(st.integers(1, 120), max_size=20), st.sampled_from(["chat", "completion"]))
def test_any_cut_of_the_upstream_bytes_sends_the_same_bytes(
    pieces: list[str], sizes: list[int], kind: str
) -> None:
    events = upstream(kind, pieces)
    for guard in (GUARD, BLOCKING):
        by_event, _ = sent(guard, kind, events)
        by_cut, _ = sent(guard, kind, cut(b"".join(events), sizes))
        assert by_cut == by_event


FINISH_TEXT = st.sampled_from([None, "", "end.", SECRET[6:]])


@settings(max_examples=150, deadline=None)
@given(PIECES, st.sampled_from(["chat", "completion"]), FINISH_TEXT)
def test_the_client_gets_what_the_filter_releases(
    pieces: list[str], kind: str, finish_text: str | None
) -> None:
    body, stream = sent(GUARD, kind, upstream(kind, pieces, finish_text))
    alone = GUARD.output_filter("acme")
    every_piece = [*pieces, finish_text or ""]
    expected = "".join(alone.feed(piece) for piece in every_piece) + alone.finish()
    assert released_text(kind, body) == expected
    assert body.endswith(b"data: [DONE]\n\n") and stream.finished
    assert b": keep-alive\n\n" in body and b"data: {not json\n\n" in body


@settings(max_examples=150, deadline=None)
@given(PIECES, st.sampled_from(["chat", "completion"]), FINISH_TEXT)
def test_all_the_text_comes_before_the_finish_reason_is_over(
    pieces: list[str], kind: str, finish_text: str | None
) -> None:
    """Clients stop reading a choice at its finish reason, or at the usage event: the text
    held back for inspection is out by then, in the finishing event or just before it."""
    body, _ = sent(GUARD, kind, upstream(kind, pieces, finish_text))
    events = texts_by_event(kind, body)
    finish = next(i for i, (_, raw) in enumerate(events) if b'"finish_reason":"length"' in raw)
    assert not any(text for text, _ in events[finish + 1 :])
    assert events[finish + 1 :] == [("", USAGE[:-2]), ("", b"data: [DONE]")]
    if finish_text is None:  # a finishing event without text passes unchanged
        assert events[finish][1] + b"\n\n" == finish_event(kind, None)


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_without_a_finish_reason_the_tail_comes_before_usage_or_done(kind: str) -> None:
    events = [text_event(kind, "Hello", True), text_event(kind, " world", False)]
    for ending in ([USAGE, b"data: [DONE]\n\n"], [b"data: [DONE]\n\n"]):
        body, _ = sent(GUARD, kind, [*events, *ending])
        texts = texts_by_event(kind, body)
        assert "".join(text for text, _ in texts[: -len(ending)]) == "Hello world"
        assert [raw + b"\n\n" for _, raw in texts[-len(ending) :]] == ending


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text(alphabet="ab .\n", min_size=1, max_size=40), max_size=30),
    st.sampled_from(["chat", "completion"]),
)
def test_the_client_is_never_further_behind_than_the_look_back(
    pieces: list[str], kind: str
) -> None:
    """Text with nothing to redact: after each event the client has all of the upstream's text
    but at most the look-back, and all of it once the choice finishes."""
    stream = GuardedStream(GUARD.output_filter("acme"), kind)
    lookback = GUARD.policy.stream_lookback_chars
    received, released = "", ""
    for i, piece in enumerate(pieces):
        received += piece
        released += released_text(kind, stream.feed(text_event(kind, piece, i == 0)))
        assert received.startswith(released) and len(received) - len(released) <= lookback
    released += released_text(kind, stream.feed(finish_event(kind, None)))
    assert released == received


def test_nothing_is_sent_after_a_block() -> None:
    pieces = ["Your key: ", SECRET, " and more text after it"]
    body, stream = sent(BLOCKING, "chat", upstream("chat", pieces))
    assert stream.blocked is not None and "secret" in stream.blocked
    assert SECRET[:4] not in released_text("chat", body)
    assert b"[DONE]" not in body


def _crlf(event: bytes) -> bytes:
    return event.replace(b"\n", b"\r\n")


def _no_space(event: bytes) -> bytes:
    return event.replace(b"data: ", b"data:", 1)


def _named(event: bytes) -> bytes:
    return b"event: message\nid: 7\n" + event


@settings(max_examples=100, deadline=None)
@given(
    PIECES,
    st.lists(st.integers(1, 120), max_size=20),
    st.sampled_from(["chat", "completion"]),
    st.sampled_from([_crlf, _no_space, _named]),
)
def test_every_spelling_of_an_sse_event_goes_through_the_filter(
    pieces: list[str], sizes: list[int], kind: str, spell: object
) -> None:
    """CRLF line ends, ``data:`` without its space, ``event:``/``id:`` lines before the data:
    all legal SSE; the text is filtered as in the plain spelling, however the bytes are cut."""
    assert callable(spell)
    plain, _ = sent(GUARD, kind, upstream(kind, pieces))
    spelled = b"".join(spell(event) for event in upstream(kind, pieces))
    body, stream = sent(GUARD, kind, cut(spelled, sizes))
    assert released_text(kind, body.replace(b"event: message\nid: 7\n", b"")) == released_text(
        kind, plain
    )
    assert stream.finished
    assert (SECRET in body.decode()) == (SECRET in plain.decode())
