"""The gateway's SSE rewriting (``isthmus.gateway.sse_guard``) around the guard's stream filter.

However the upstream's bytes are cut into reads, the client gets the same bytes: each text
event re-serialised with what the filter releases for it, other events unchanged, the held-back
tail in one event before ``[DONE]``, and nothing after a block.
"""

from __future__ import annotations

import orjson
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


def upstream(kind: str, pieces: list[str]) -> list[bytes]:
    """The upstream's events: text, a comment, a non-JSON line, the finish, usage, [DONE]."""
    events = [text_event(kind, piece, i == 0) for i, piece in enumerate(pieces)]
    events.insert(len(events) // 2, b": keep-alive\n\n")
    events.insert(len(events) // 2, b"data: {not json\n\n")
    events.append(
        b'data: {"id":"r1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    )
    events.append(b'data: {"id":"r1","choices":[],"usage":{"prompt_tokens":3}}\n\n')
    return [*events, b"data: [DONE]\n\n"]


def sent(guard: Guard, kind: str, reads: list[bytes]) -> tuple[bytes, GuardedStream]:
    stream = GuardedStream(guard.output_filter("acme"), kind)
    return b"".join(stream.feed(read) for read in reads), stream


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    reads, position = [], 0
    for size in sizes:
        reads.append(data[position : position + size])
        position += size
    return [*reads, data[position:]]


def released_text(kind: str, body: bytes) -> str:
    key = "content" if kind == "chat" else "text"
    out = []
    for raw in body.split(b"\n\n"):
        if raw.startswith(b"data: {") and b'"choices":[{' in raw:
            try:
                choice = orjson.loads(raw[6:])["choices"][0]
            except orjson.JSONDecodeError:
                continue
            holder = choice.get("delta", {}) if kind == "chat" else choice
            out.append(holder.get(key) or "")
    return "".join(out)


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


@settings(max_examples=150, deadline=None)
@given(PIECES, st.sampled_from(["chat", "completion"]))
def test_the_client_gets_what_the_filter_releases(pieces: list[str], kind: str) -> None:
    body, stream = sent(GUARD, kind, upstream(kind, pieces))
    alone = GUARD.output_filter("acme")
    expected = "".join(alone.feed(piece) for piece in pieces) + alone.finish()
    assert released_text(kind, body) == expected
    assert body.endswith(b"data: [DONE]\n\n") and stream.finished
    assert b": keep-alive\n\n" in body and b"data: {not json\n\n" in body


def test_nothing_is_sent_after_a_block() -> None:
    pieces = ["Your key: ", SECRET, " and more text after it"]
    body, stream = sent(BLOCKING, "chat", upstream("chat", pieces))
    assert stream.blocked is not None and "secret" in stream.blocked
    assert SECRET[:4] not in released_text("chat", body)
    assert b"[DONE]" not in body
