"""Agent tool calls under tenant policy: which tools, and what their arguments may carry.

Invariants: a tool is allowed when its name matches one of the tenant's ``allowed_tools``
patterns (``fnmatch``: ``search_*``; ``*`` allows all); a call to any other tool is one
``tool_call`` finding, rule ``tool.not_allowed``. For an allowed tool, the arguments (the text
inspected) are searched with the PII, secret and URL inspectors and each finding of a family
the tool's ``ToolRule`` denies becomes a ``tool_call`` finding (``tool.argument_pii``, …) at
that span — "no outbound message that carries PII" is ``send_email: {deny: [pii]}``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from isthmus.guard.credentials import SecretInspector
from isthmus.guard.findings import Finding, InspectionContext, Inspector
from isthmus.guard.pii import PiiInspector
from isthmus.guard.urls import UrlInspector

__all__ = ["ToolCallInspector", "tool_allowed"]


def tool_allowed(name: str, allowed: frozenset[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed)


class ToolCallInspector:
    """Allowed tools and argument constraints (see the module invariants)."""

    name = "tool_calls"

    def __init__(self) -> None:
        self._by_family: dict[str, Inspector] = {
            "pii": PiiInspector(),
            "secret": SecretInspector(),
            "url": UrlInspector(),
        }

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        tool = context.tool_name
        if tool is None:
            return ()
        if not tool_allowed(tool, context.allowed_tools):
            return (
                Finding(
                    "tool_call", "tool.not_allowed", 0, len(text), 1.0, f"tool {tool!r} not allowed"
                ),
            )
        rule = context.tool_rules.get(tool)
        if rule is None:
            return ()
        out: list[Finding] = []
        if rule.max_argument_chars is not None and len(text) > rule.max_argument_chars:
            out.append(
                Finding(
                    "tool_call",
                    "tool.arguments_too_long",
                    0,
                    len(text),
                    1.0,
                    f"{len(text)} > {rule.max_argument_chars} characters",
                )
            )
        for family in sorted(rule.deny_families):
            inspector = self._by_family.get(family)
            if inspector is None:
                continue
            for finding in inspector.inspect(text, context):
                out.append(
                    Finding(
                        "tool_call",
                        f"tool.argument_{family}",
                        finding.start,
                        finding.end,
                        finding.score,
                        f"{finding.category} in arguments of {tool!r}",
                    )
                )
        return out
