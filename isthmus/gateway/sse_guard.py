"""Output inspection on a stream: rewrite SSE events through the guard's output filter.

The upstream's bytes arrive in arbitrary pieces; events are cut at blank lines, the text of each
chunk (``choices[0].delta.content`` for chat, ``choices[0].text`` for completions) goes through
the filter — which holds back a bounded look-back so a secret split across events is still
caught — and the event is re-serialised with what the filter releases. Once the filter blocks,
nothing more of the upstream's text is sent.

The held-back tail is released when the choice ends, because clients stop reading there: in the
event that carries the ``finish_reason`` when it has text, else in one extra event just before
it; failing a finish reason, just before a usage-only event (``choices: []``) or
``data: [DONE]``, whichever comes first.

Invariant: no byte of model text reaches the client without passing the filter; events that
carry no text (role headers, usage, finish reasons without text) pass unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson

from isthmus.guard import OutputFilter

__all__ = ["GuardedStream"]

_DONE = b"data: [DONE]"


class GuardedStream:
    def __init__(self, output_filter: OutputFilter, kind: str) -> None:
        self.filter = output_filter
        self.kind = kind
        self._pending = b""
        self._template: dict[str, Any] | None = None
        self.finished = False

    @property
    def blocked(self) -> str | None:
        return self.filter.blocked

    def _text_of(self, event: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None, None
        choice = choices[0]
        if self.kind == "chat":
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                return delta, "content"
            return None, None
        if isinstance(choice.get("text"), str):
            return choice, "text"
        return None, None

    def _tail_event(self, text: str) -> bytes:
        template = self._template or {"object": "chat.completion.chunk", "choices": [{}]}
        choice: dict[str, Any] = {"index": 0, "finish_reason": None}
        if self.kind == "chat":
            choice["delta"] = {"content": text}
        else:
            choice["text"] = text
        event = {k: v for k, v in template.items() if k in ("id", "object", "created", "model")}
        event["choices"] = [choice]
        return b"data: " + orjson.dumps(event) + b"\n\n"

    def feed(self, chunk: bytes) -> bytes:
        """Bytes safe to send now for this piece of the upstream stream."""
        data = self._pending + chunk
        if b"\r" in data:  # SSE lines may end in CRLF or CR (a trailing CR may be half a CRLF)
            keep = b"\r" if data.endswith(b"\r") else b""
            data = data[: len(data) - len(keep)].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            data += keep
        *events, self._pending = data.split(b"\n\n")
        out: list[bytes] = []
        for raw in events:
            if self.filter.blocked is not None:
                break  # nothing more of the upstream's text is sent
            out.append(self._rewrite(raw))
        return b"".join(out)

    def _rewrite(self, raw: bytes) -> bytes:
        """One complete event (without its blank line) as it may be sent now."""
        fields, data = _fields_and_data(raw.strip())
        if data is None:
            return raw + b"\n\n"
        if data == b"[DONE]":
            return self._done()
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return raw + b"\n\n"
        if not isinstance(event, dict):
            return raw + b"\n\n"
        holder, key = self._text_of(event)
        if holder is None or key is None:
            if not _ends_text(event):
                return raw + b"\n\n"
            return self._release_tail(raw + b"\n\n")
        if self._template is None:
            self._template = event
        released = self.filter.feed(holder[key])
        if _ends_text(event):
            released += self.filter.finish()
        if self.filter.blocked is not None:
            return b""
        holder[key] = released
        return fields + b"data: " + orjson.dumps(event) + b"\n\n"

    def _release_tail(self, then: bytes) -> bytes:
        """The held-back tail in one more event, then ``then`` (nothing if the tail blocks)."""
        tail = self.filter.finish()
        if self.filter.blocked is not None:
            return b""
        return (self._tail_event(tail) if tail else b"") + then

    def _done(self) -> bytes:
        """``[DONE]``: whatever is still held back, then ``[DONE]`` (unless blocked)."""
        self.finished = True
        return self._release_tail(_DONE + b"\n\n")


def _fields_and_data(event: bytes) -> tuple[bytes, bytes | None]:
    """An event's lines other than ``data`` (``event:``, ``id:``, comments; each with its
    newline) and its data (``data:`` lines, the optional space after the colon dropped, joined
    by newlines; None if it has none)."""
    if event.startswith(b"data: ") and b"\n" not in event:  # what OpenAI-style servers send
        return b"", event[6:]
    fields: list[bytes] = []
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        else:
            fields.append(line + b"\n")
    return b"".join(fields), b"\n".join(data) if data else None


def _ends_text(event: dict[str, Any]) -> bool:
    """No more text follows ``event``: it finishes the choice or is the usage-only event."""
    choices = event.get("choices")
    if not isinstance(choices, list):
        return False
    if not choices:
        return "usage" in event
    return isinstance(choices[0], dict) and choices[0].get("finish_reason") is not None
