"""Inspect a streamed response chunk by chunk, holding back a bounded window.

``feed(chunk)`` returns the text that is safe to send now; ``finish()`` returns the rest.
Text is released only once it is more than ``lookback`` characters behind the newest
character received, so a secret or personal number split across chunks is whole in the window
when it is judged, and is redacted before any of it reaches the client. While no more than
``lookback`` characters are held, nothing could be released, so the window is not judged
until it grows past that (or the response ends): a short response is inspected once.

Invariants:

- At most ``lookback`` characters are held back after a ``feed`` returns (plus nothing: the
  window is the bound). A match that touches the newest character may still be growing, so
  the cut is moved before it; if that would hold more than ``lookback`` characters (a match
  longer than the window, e.g. a private key block), the part that must leave is replaced by
  the marker now and the redaction continues through the rest of the match as it arrives.
- Concatenating every ``feed`` result and ``finish`` gives the response with every redact
  verdict's span replaced by a marker; after a ``block`` verdict nothing more is released and
  ``blocked`` holds the reason.
- ``verdicts`` lists each judged finding once, with spans in the whole response's offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from isthmus.engines.tokens import count_tokens
from isthmus.guard.decide import ContentHasher, Verdict, judge
from isthmus.guard.findings import InspectionContext
from isthmus.guard.pipeline import Pipeline
from isthmus.guard.policy import GuardPolicy
from isthmus.guard.redact import marker

__all__ = ["NullOutputFilter", "OutputStreamFilter"]

_KEY_FOOTER = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_FOOTER_MAX = 40  # longest END line: "-----END ENCRYPTED PRIVATE KEY-----"
_TOKEN_RUN = re.compile(r"\S*")


@dataclass(slots=True)
class OutputStreamFilter:
    """A stateful filter for one response (see the module invariants). Not thread-safe."""

    pipeline: Pipeline
    context: InspectionContext
    policy: GuardPolicy
    min_score: float
    lookback: int = 256
    hasher: ContentHasher | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    blocked: str | None = None
    window_context: InspectionContext | None = None
    """``context`` without its output cap (a window would undercount: the filter counts the
    whole response itself); built on first use when not given (``Guard`` keeps one per tenant)."""
    _pending: str = ""
    _offset: int = 0
    _carry: str | None = None
    _output_tokens: int = 0

    @property
    def held(self) -> int:
        """Characters received but not yet released."""
        return len(self._pending)

    def feed(self, chunk: str, *, last: bool = False) -> str:
        """Take ``chunk``; return what may be sent now. ``last``: the response ends with it
        (the same as ``feed(chunk)`` then ``finish()``, judging the text once)."""
        if self.blocked is not None:
            return ""
        if chunk:
            self._pending += chunk
            if self.context.max_output_tokens is not None:  # counted only against a cap
                self._output_tokens += count_tokens(chunk)
        if last:
            return self._drain(final=True)
        if not chunk or (self._carry is None and len(self._pending) <= self.lookback):
            return ""  # nothing could leave the window yet
        return self._drain(final=False)

    def finish(self) -> str:
        if self.blocked is not None:
            return ""
        return self._drain(final=True)

    # -- internals ----------------------------------------------------------------------------
    def _continue_carry(self, final: bool) -> None:
        """Swallow the rest of a redaction that ran past the window (its marker is already out).

        A private key runs to its ``END`` line (the last few characters are held back while
        they may be the start of that line), or to the end of the response if it never ends;
        a leaked system prompt is re-detected by overlap; anything else runs to whitespace.
        """
        assert self._carry is not None
        pending = self._pending
        if self._carry == "secret:private_key":
            footer = _KEY_FOOTER.search(pending)
            if footer is not None or final:
                self._consume(footer.end() if footer is not None else len(pending))
                self._carry = None
                return
            # everything up to the END line is key material; hold only what may be its start
            self._consume(max(0, len(pending) - _FOOTER_MAX))
            return
        if self._carry == "system_prompt_leak":
            self._carry = None
            return
        run = _TOKEN_RUN.match(pending)
        length = run.end() if run else 0
        self._consume(length)
        if final or length < len(pending) or (length == 0 and pending):
            self._carry = None

    def _consume(self, length: int) -> None:
        self._pending = self._pending[length:]
        self._offset += length

    def _drain(self, final: bool) -> str:
        if self._carry is not None:
            self._continue_carry(final)
            if self._carry is not None:
                return ""
        text = self._pending
        if not text:
            return ""
        context = self.context
        if self.window_context is None:
            self.window_context = context.but(max_output_tokens=None)
        inspection = self.pipeline.run(text, self.window_context)
        verdicts = judge(
            inspection.findings,
            text,
            policy=self.policy,
            tenant=context.tenant,
            direction="output",
            location="output",
            min_score=self.min_score,
            hasher=self.hasher,
        )
        verdicts += self._consumption(text, context)
        for verdict in verdicts:
            if verdict.action == "block":
                self._record([verdict])
                self.blocked = f"blocked by {verdict.rule} ({verdict.category}) in the response"
                self._pending = ""
                return ""
        end = len(text)
        cut = end if final else max(0, end - self.lookback)
        redactions = sorted(
            (v for v in verdicts if v.action == "redact"), key=lambda v: (v.start, v.end)
        )
        out: list[str] = []
        position = 0
        for verdict in redactions:
            if verdict.start >= cut or verdict.end <= position:
                continue
            growing = verdict.end >= end and not final
            if verdict.end <= cut or not growing:
                # complete: redact all of it now (the cut may move forward past it)
                out.append(text[position : verdict.start])
                out.append(marker(verdict.category))
                position = max(position, verdict.end)
                cut = max(cut, position)
                self._record([verdict])
                continue
            # still growing: keep it whole in the window if the bound allows, else force it out
            if end - verdict.start <= self.lookback:
                cut = max(position, verdict.start)
                break
            out.append(text[position : verdict.start])
            out.append(marker(verdict.category))
            self._record([_partial(verdict, cut)])
            position = cut
            self._carry = verdict.category
            break
        # anything else still growing at the end must not be cut in half either
        for verdict in verdicts:
            growing = verdict.end >= end and not final
            fits = position <= verdict.start < cut and end - verdict.start <= self.lookback
            if verdict.action != "redact" and growing and fits:
                cut = verdict.start
        cut = max(cut, position)
        out.append(text[position:cut])
        self._record([v for v in verdicts if v.action in ("allow", "flag") and v.start < cut])
        self._consume(cut)
        return "".join(out)

    def _consumption(self, text: str, context: InspectionContext) -> list[Verdict]:
        cap = context.max_output_tokens
        if cap is None or self._output_tokens <= cap:
            return []
        action = self.policy.action_for(context.tenant, "output", "consumption")
        return [
            Verdict(
                "output",
                "consumption",
                "consumption.output_tokens",
                action,
                1.0,
                "output",
                0,
                len(text),
                "",
                f"{self._output_tokens} output tokens > cap {cap}",
            )
        ]

    def _record(self, verdicts: list[Verdict]) -> None:
        if not verdicts:
            return
        seen = {(v.rule, v.start, v.end) for v in self.verdicts}
        for verdict in verdicts:
            shifted = _shift(verdict, self._offset)
            key = (shifted.rule, shifted.start, shifted.end)
            if key not in seen:
                self.verdicts.append(shifted)
                seen.add(key)


def _partial(verdict: Verdict, cut: int) -> Verdict:
    return Verdict(
        verdict.direction,
        verdict.category,
        verdict.rule,
        verdict.action,
        verdict.score,
        verdict.location,
        verdict.start,
        cut,
        verdict.content_hash,
        (verdict.detail + "; " if verdict.detail else "") + "longer than the window",
    )


def _shift(verdict: Verdict, offset: int) -> Verdict:
    return Verdict(
        verdict.direction,
        verdict.category,
        verdict.rule,
        verdict.action,
        verdict.score,
        verdict.location,
        verdict.start + offset,
        verdict.end + offset,
        verdict.content_hash,
        verdict.detail,
    )


class NullOutputFilter:
    """The "off" filter: releases everything at once, finds nothing."""

    verdicts: list[Verdict]
    blocked: str | None = None

    def __init__(self) -> None:
        self.verdicts = []

    def feed(self, chunk: str) -> str:
        return chunk

    def finish(self) -> str:
        return ""
