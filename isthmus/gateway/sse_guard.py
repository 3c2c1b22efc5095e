"""Output inspection on a stream: rewrite SSE events through the guard's output filter.

The upstream's bytes arrive in arbitrary pieces; events are cut at blank lines, the text of each
chunk (``choices[0].delta.content`` for chat, ``choices[0].text`` for completions) goes through
the filter — which holds back a bounded look-back so a secret split across events is still
caught — and the event is re-serialised with what the filter releases. The held-back tail is
released in one extra event just before ``data: [DONE]``. Once the filter blocks, nothing more
of the upstream's text is sent.

Invariant: no byte of model text reaches the client without passing the filter; events that
carry no text (role headers, usage, finish reasons) pass unchanged.
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
        self._pending += chunk
        out: list[bytes] = []
        while b"\n\n" in self._pending and self.blocked is None:
            raw, self._pending = self._pending.split(b"\n\n", 1)
            line = raw.strip()
            if line.startswith(_DONE):
                tail = self.filter.finish()
                if tail and self.blocked is None:
                    out.append(self._tail_event(tail))
                if self.blocked is None:
                    out.append(_DONE + b"\n\n")
                self.finished = True
                continue
            if not line.startswith(b"data: {"):
                out.append(raw + b"\n\n")
                continue
            try:
                event = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                out.append(raw + b"\n\n")
                continue
            holder, key = self._text_of(event) if isinstance(event, dict) else (None, None)
            if holder is None or key is None:
                out.append(raw + b"\n\n")
                continue
            if self._template is None:
                self._template = event
            released = self.filter.feed(holder[key])
            if self.blocked is not None:
                break
            holder[key] = released
            out.append(b"data: " + orjson.dumps(event) + b"\n\n")
        return b"".join(out)
