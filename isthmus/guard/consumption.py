"""Unbounded consumption: prompt and output token caps per tenant.

Invariant: tokens are counted with the gateway's own approximate tokenizer
(``isthmus.engines.tokens.count_tokens``), so the guard's caps and the gateway's budgets
count the same thing. On input the text is the whole prompt; on output it is everything the
model has produced so far (the stream filter passes its running total).
"""

from __future__ import annotations

from collections.abc import Sequence

from isthmus.engines.tokens import count_tokens
from isthmus.guard.findings import Finding, InspectionContext

__all__ = ["ConsumptionInspector"]


class ConsumptionInspector:
    """Prompt tokens over ``max_prompt_tokens`` (input) or output over ``max_output_tokens``."""

    name = "consumption"

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        cap = (
            context.max_output_tokens
            if context.direction == "output"
            else context.max_prompt_tokens
        )
        if cap is None or context.direction == "context":
            return ()
        if len(text) <= cap:  # a token is at least one character: no need to count
            return ()
        tokens = count_tokens(text)
        if tokens <= cap:
            return ()
        which = "output" if context.direction == "output" else "prompt"
        return (
            Finding(
                "consumption",
                f"consumption.{which}_tokens",
                0,
                len(text),
                1.0,
                f"{tokens} {which} tokens > cap {cap}",
            ),
        )
