"""The guard as the gateway sees it: a request in, a decision out; a response filtered as it streams.

Invariants:

- ``Guard`` is pure and synchronous: no I/O, no globals beyond the read-only classifier
  weights; one instance serves every request and tenant (per-tenant settings are resolved
  from its ``GuardPolicy`` on each call).
- Which text goes through which direction: ``user`` messages -> input; ``tool``/``function``
  messages and ``documents`` -> context; ``system``/``developer``/``assistant`` messages are
  the tenant's own or the model's earlier output and are not inspected on the way in; the
  model's text and tool calls -> output. A message's text is its string content, or the
  ``text`` of every content part that has one, whatever the part's ``type`` (an engine reads
  them all); redaction rewrites those same parts.
- A decision's action is the most severe of its verdicts. ``messages`` (or ``text``) holds the
  redacted payload whenever some verdict redacts and none blocks; otherwise it is ``None``
  and the caller forwards what it has (``allow``/``flag``) or refuses (``block``) with
  ``reason``, which names the rule.
- ``NullGuard`` ("guard: off") has the same methods and always allows.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from isthmus.engines.tokens import count_tokens
from isthmus.guard.decide import ContentHasher, Verdict, judge
from isthmus.guard.findings import Action, Direction, Finding, InspectionContext, most_severe
from isthmus.guard.pipeline import Pipeline
from isthmus.guard.policy import GuardPolicy, TenantSettings
from isthmus.guard.redact import redact
from isthmus.guard.registry import create_inspector
from isthmus.guard.stream import NullOutputFilter, OutputStreamFilter
from isthmus.guard.tools import tool_allowed

__all__ = ["Guard", "GuardDecision", "GuardLike", "NullGuard", "OutputFilter"]

_INPUT_ROLES = {"user"}
_CONTEXT_ROLES = {"tool", "function"}


@dataclass(frozen=True, slots=True)
class GuardDecision:
    """What to do with a request or response, and why."""

    action: Action
    verdicts: tuple[Verdict, ...] = ()
    reason: str = ""
    messages: list[dict[str, Any]] | None = None
    documents: list[str] | None = None
    text: str | None = None

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "reason": self.reason,
            "verdicts": [v.as_dict() for v in self.verdicts],
        }


ALLOW = GuardDecision("allow")


class OutputFilter(Protocol):
    verdicts: list[Verdict]
    blocked: str | None

    def feed(self, chunk: str) -> str: ...

    def finish(self) -> str: ...


class GuardLike(Protocol):
    """What the gateway calls: ``Guard`` or ``NullGuard``."""

    def inspect_request(
        self,
        tenant: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[str] | None = None,
        max_output_tokens: int | None = None,
    ) -> GuardDecision: ...

    def inspect_output(
        self, tenant: str, text: str, *, system_prompt: str | None = None
    ) -> GuardDecision: ...

    def inspect_tool_call(self, tenant: str, name: str, arguments: str) -> GuardDecision: ...

    def output_filter(self, tenant: str, *, system_prompt: str | None = None) -> OutputFilter: ...


def _text_parts(content: Any) -> list[tuple[int | None, str]]:
    """(part index or None, text) for a message's content: a string or a list of parts.

    Every part with a string ``text`` counts, whatever its ``type``: engines read them all
    (vLLM takes ``input_text`` as text, ``isthmus.engines.tokens`` counts any of them), so a
    part's type must not be a way past the guard.
    """
    if isinstance(content, str):
        return [(None, content)]
    if isinstance(content, list):
        return [
            (i, part["text"])
            for i, part in enumerate(content)
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        ]
    return []


def _reason(verdicts: Sequence[Verdict], action: Action) -> str:
    if action == "allow":
        return ""
    decisive = [v for v in verdicts if v.action == action]
    first = max(decisive, key=lambda v: v.score)
    verb = {"block": "blocked", "redact": "redacted", "flag": "flagged"}[action]
    more = f" and {len(decisive) - 1} more" if len(decisive) > 1 else ""
    return f"{verb} by {first.rule} ({first.category}) in {first.location}{more}"


_MEMO_TENANTS = 10_000


class _TenantContexts(NamedTuple):
    """A tenant's inspection contexts without a system prompt, built once per tenant (the
    policy is frozen): as configured, without the prompt cap (a request's caps are judged on
    the whole prompt, not per message), for output, and for output without the output cap (a
    stream window; the filter counts the whole response)."""

    base: InspectionContext
    no_prompt_cap: InspectionContext
    output: InspectionContext
    output_window: InspectionContext


class Guard:
    """Inspection and enforcement under one ``GuardPolicy`` (see the module invariants)."""

    def __init__(self, policy: GuardPolicy, *, hasher: ContentHasher | None = None) -> None:
        self.policy = policy
        self.hasher = hasher
        self.pipelines: dict[Direction, Pipeline] = {
            direction: Pipeline(
                direction,
                tuple(create_inspector(n) for n in policy.direction_inspectors(direction)),
            )
            for direction in ("input", "context", "output")
        }
        self._tool_inspector = create_inspector("tool_calls")
        # the policy is frozen: each tenant's settings and base contexts are built once
        self._settings: dict[str, TenantSettings] = {}
        self._contexts: dict[str, _TenantContexts] = {}

    def settings_for(self, tenant: str) -> TenantSettings:
        settings = self._settings.get(tenant)
        if settings is None:
            if len(self._settings) >= _MEMO_TENANTS:
                self._settings.clear()
                self._contexts.clear()
            settings = self._settings[tenant] = self.policy.settings_for(tenant)
        return settings

    def _base_contexts(self, tenant: str, settings: TenantSettings) -> _TenantContexts:
        contexts = self._contexts.get(tenant)
        if contexts is None:
            context = self.context_for(tenant, settings)
            output = context.but(direction="output")
            contexts = _TenantContexts(
                context,
                context.but(max_prompt_tokens=None),
                output,
                output.but(max_output_tokens=None),
            )
            self._contexts[tenant] = contexts
        return contexts

    # -- context --------------------------------------------------------------------------------
    def context_for(
        self, tenant: str, settings: TenantSettings, system_prompt: str | None = None
    ) -> InspectionContext:
        return InspectionContext(
            tenant=tenant,
            system_prompt=system_prompt,
            canary=settings.canary,
            allowed_tools=settings.allowed_tools,
            tool_rules=settings.tool_rules,
            max_prompt_tokens=settings.max_prompt_tokens,
            max_output_tokens=settings.max_output_tokens,
            allow_domains=settings.allow_domains,
            deny_domains=settings.deny_domains,
            protected_domains=settings.protected_domains,
        )

    def _judge(
        self,
        tenant: str,
        direction: Direction,
        text: str,
        findings: Sequence[Finding],
        location: str,
        settings: TenantSettings,
    ) -> list[Verdict]:
        return judge(
            findings,
            text,
            policy=self.policy,
            tenant=tenant,
            direction=direction,
            location=location,
            min_score=settings.min_score,
            hasher=self.hasher,
        )

    # -- requests -------------------------------------------------------------------------------
    def inspect_text(self, tenant: str, direction: Direction, text: str) -> GuardDecision:
        """One text through one direction's pipeline (for tools, tests and the bench)."""
        settings = self.settings_for(tenant)
        if not settings.enabled:
            return ALLOW
        context = self._base_contexts(tenant, settings).base
        inspection = self.pipelines[direction].run(text, context)
        verdicts = self._judge(tenant, direction, text, inspection.findings, direction, settings)
        action = most_severe([v.action for v in verdicts])
        redacted = self._redacted(text, verdicts) if action == "redact" else None
        return GuardDecision(action, tuple(verdicts), _reason(verdicts, action), text=redacted)

    def inspect_request(
        self,
        tenant: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[str] | None = None,
        max_output_tokens: int | None = None,
    ) -> GuardDecision:
        """Judge a chat request: user messages (input), tool results and documents (context),
        declared tools, and the token caps."""
        settings = self.settings_for(tenant)
        if not settings.enabled:
            return ALLOW
        no_cap = self._base_contexts(tenant, settings).no_prompt_cap
        verdicts: list[Verdict] = []
        redactions: dict[tuple[int, int | None], list[Verdict]] = {}
        for i, message in enumerate(messages):
            role = message.get("role")
            direction: Direction | None = (
                "input" if role in _INPUT_ROLES else "context" if role in _CONTEXT_ROLES else None
            )
            if direction is None:
                continue
            for part, text in _text_parts(message.get("content")):
                location = f"messages[{i}]" + (f".content[{part}]" if part is not None else "")
                inspection = self.pipelines[direction].run(text, no_cap)
                judged = self._judge(
                    tenant, direction, text, inspection.findings, location, settings
                )
                verdicts += judged
                redactions[(i, part)] = [v for v in judged if v.action == "redact"]
        document_verdicts: list[list[Verdict]] = []
        for j, document in enumerate(documents or ()):
            inspection = self.pipelines["context"].run(document, no_cap)
            judged = self._judge(
                tenant, "context", document, inspection.findings, f"documents[{j}]", settings
            )
            verdicts += judged
            document_verdicts.append(judged)
        verdicts += self._declared_tools(tenant, tools or (), settings)
        verdicts += self._prompt_caps(tenant, messages, settings, max_output_tokens)
        if not verdicts:
            return ALLOW
        action = most_severe([v.action for v in verdicts])
        decision = GuardDecision(action, tuple(verdicts), _reason(verdicts, action))
        if action != "redact":
            return decision
        return dataclasses.replace(
            decision,
            messages=self._redacted_messages(messages, redactions),
            documents=[
                self._redacted(doc, judged)
                for doc, judged in zip(documents or (), document_verdicts, strict=True)
            ]
            if documents
            else None,
        )

    def _declared_tools(
        self, tenant: str, tools: Sequence[Mapping[str, Any]], settings: TenantSettings
    ) -> list[Verdict]:
        out: list[Verdict] = []
        for k, tool in enumerate(tools):
            function = tool.get("function")
            name = function.get("name") if isinstance(function, Mapping) else tool.get("name")
            if not isinstance(name, str) or tool_allowed(name, settings.allowed_tools):
                continue
            action = self.policy.action_for(tenant, "input", "tool_call")
            out.append(
                Verdict(
                    "input", "tool_call", "tool.not_allowed", action, 1.0, f"tools[{k}]", 0, 0,
                    detail=f"tool {name!r} is not allowed for this tenant",
                )
            )  # fmt: skip
        return out

    def _prompt_caps(
        self,
        tenant: str,
        messages: Sequence[Mapping[str, Any]],
        settings: TenantSettings,
        max_output_tokens: int | None,
    ) -> list[Verdict]:
        out: list[Verdict] = []
        cap = settings.max_prompt_tokens
        if cap is not None:
            tokens = sum(
                count_tokens(text)
                for message in messages
                for _, text in _text_parts(message.get("content"))
            )
            if tokens > cap:
                action = self.policy.action_for(tenant, "input", "consumption")
                out.append(
                    Verdict(
                        "input", "consumption", "consumption.prompt_tokens", action, 1.0,
                        "messages", 0, 0, detail=f"{tokens} prompt tokens > cap {cap}",
                    )
                )  # fmt: skip
        out_cap = settings.max_output_tokens
        if out_cap is not None and max_output_tokens is not None and max_output_tokens > out_cap:
            action = self.policy.action_for(tenant, "input", "consumption")
            out.append(
                Verdict(
                    "input", "consumption", "consumption.output_tokens_requested", action, 1.0,
                    "max_tokens", 0, 0, detail=f"{max_output_tokens} requested > cap {out_cap}",
                )
            )  # fmt: skip
        return out

    @staticmethod
    def _redacted(text: str, verdicts: Sequence[Verdict]) -> str:
        return redact(
            text, [(v.start, v.end, v.category) for v in verdicts if v.action == "redact"]
        )

    def _redacted_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        redactions: Mapping[tuple[int, int | None], list[Verdict]],
    ) -> list[dict[str, Any]]:
        out = [dict(m) for m in messages]
        for (i, part), verdicts in redactions.items():
            if not verdicts:
                continue
            content = out[i].get("content")
            if part is None and isinstance(content, str):
                out[i]["content"] = self._redacted(content, verdicts)
            elif part is not None and isinstance(content, list):
                parts = copy.deepcopy(content)
                parts[part]["text"] = self._redacted(parts[part]["text"], verdicts)
                out[i]["content"] = parts
        return out

    # -- responses ------------------------------------------------------------------------------
    def inspect_output(
        self, tenant: str, text: str, *, system_prompt: str | None = None
    ) -> GuardDecision:
        """Judge a whole (non-streamed) response text."""
        settings = self.settings_for(tenant)
        if not settings.enabled:
            return ALLOW
        output = self.output_filter(tenant, system_prompt=system_prompt)
        assert isinstance(output, OutputStreamFilter)
        released = output.feed(text, last=True)
        if not output.verdicts:
            return ALLOW
        verdicts = tuple(output.verdicts)
        action = most_severe([v.action for v in verdicts])
        return GuardDecision(
            action,
            verdicts,
            output.blocked or _reason(verdicts, action),
            text=released if action == "redact" else None,
        )

    def inspect_tool_call(self, tenant: str, name: str, arguments: str) -> GuardDecision:
        """Judge a tool call the model wants to make (name and JSON arguments)."""
        settings = self.settings_for(tenant)
        if not settings.enabled:
            return ALLOW
        context = self.context_for(tenant, settings).but(direction="output", tool_name=name)
        findings = self._tool_inspector.inspect(arguments, context)
        verdicts = self._judge(tenant, "output", arguments, findings, f"tool_call:{name}", settings)
        action = most_severe([v.action for v in verdicts])
        if action == "redact":  # a tool call cannot be half-made: constrained arguments refuse it
            action = "block"
            verdicts = [dataclasses.replace(v, action="block") for v in verdicts]
        return GuardDecision(action, tuple(verdicts), _reason(verdicts, action))

    def output_filter(self, tenant: str, *, system_prompt: str | None = None) -> OutputFilter:
        """A stream filter for one response to ``tenant``."""
        settings = self.settings_for(tenant)
        if not settings.enabled:
            return NullOutputFilter()
        window: InspectionContext | None = None
        if system_prompt is None:
            contexts = self._base_contexts(tenant, settings)
            context, window = contexts.output, contexts.output_window
        else:
            context = self.context_for(tenant, settings, system_prompt).but(direction="output")
        return OutputStreamFilter(
            pipeline=self.pipelines["output"],
            context=context,
            policy=self.policy,
            min_score=settings.min_score,
            lookback=self.policy.stream_lookback_chars,
            hasher=self.hasher,
            window_context=window,
        )


@dataclass(frozen=True, slots=True)
class NullGuard:
    """Guard off: every call allows, every stream passes through."""

    policy: GuardPolicy = field(default_factory=GuardPolicy)

    def inspect_text(self, tenant: str, direction: Direction, text: str) -> GuardDecision:
        return ALLOW

    def inspect_request(
        self,
        tenant: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[str] | None = None,
        max_output_tokens: int | None = None,
    ) -> GuardDecision:
        return ALLOW

    def inspect_output(
        self, tenant: str, text: str, *, system_prompt: str | None = None
    ) -> GuardDecision:
        return ALLOW

    def inspect_tool_call(self, tenant: str, name: str, arguments: str) -> GuardDecision:
        return ALLOW

    def output_filter(self, tenant: str, *, system_prompt: str | None = None) -> OutputFilter:
        return NullOutputFilter()
