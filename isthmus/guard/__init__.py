"""The guard: inspect every prompt, document, response and tool call; act by policy.

Inspectors share one protocol (``Inspector``: text and context in, ``Finding`` s out) and are
found by name (``registry.INSPECTORS``); a ``Pipeline`` per direction normalises Unicode first
and runs its inspectors; ``judge`` turns findings into ``Verdict`` s (allow / flag / redact /
block) under a ``GuardPolicy``; ``Guard`` is what the gateway calls.

How the gateway calls it (all calls are synchronous, pure and fast; run them inline):

1. At start: ``guard = Guard(policy, hasher=ContentHasher(key))`` with the ``guard`` section
   of the active policy bundle (``isthmus.bundle``), or ``NullGuard()`` when the guard is off.
   Rebuild it when a newer bundle is accepted (the old one keeps serving until then).
2. Per request, after authentication and body parsing, before routing::

       decision = guard.inspect_request(tenant.name, body["messages"], tools=body.get("tools"),
                                        max_output_tokens=parsed.max_output_tokens)
       audit.record(tenant.name, decision.verdicts)          # every verdict, hashed content
       if decision.blocked: -> 400 {"error": {"code": "guard_blocked", "message": decision.reason}}
       if decision.messages is not None: body["messages"] = decision.messages   # redacted

   For ``/v1/completions`` pass ``[{"role": "user", "content": prompt}]``.
3. Per response. Streaming: ``out = guard.output_filter(tenant.name, system_prompt=...)``;
   for every SSE event, pass ``choices[0].delta.content`` through ``out.feed(...)`` and send
   the event with the returned text (possibly empty); before ``[DONE]`` send one more event
   with ``out.finish()``; if ``out.blocked`` becomes set, end the stream with an error event
   carrying ``out.blocked``. Then ``audit.record(tenant.name, out.verdicts)``.
   Non-streaming: ``guard.inspect_output(tenant.name, text, system_prompt=...)``, and for each
   tool call the model makes, ``guard.inspect_tool_call(tenant.name, name, arguments)``.
"""

from isthmus.guard.decide import ContentHasher, Verdict, judge
from isthmus.guard.findings import (
    Action,
    Direction,
    Finding,
    InspectionContext,
    Inspector,
    ToolRule,
)
from isthmus.guard.guard import Guard, GuardDecision, GuardLike, NullGuard, OutputFilter
from isthmus.guard.normalize import NormalizedText, normalize
from isthmus.guard.pipeline import Inspection, Pipeline
from isthmus.guard.policy import (
    GuardPolicy,
    TenantGuardPolicy,
    guard_policy_from_data,
    load_guard_policy,
    load_guard_policy_text,
)
from isthmus.guard.registry import INSPECTORS, create_inspector
from isthmus.guard.stream import NullOutputFilter, OutputStreamFilter

__all__ = [
    "INSPECTORS",
    "Action",
    "ContentHasher",
    "Direction",
    "Finding",
    "Guard",
    "GuardDecision",
    "GuardLike",
    "GuardPolicy",
    "Inspection",
    "InspectionContext",
    "Inspector",
    "NormalizedText",
    "NullGuard",
    "NullOutputFilter",
    "OutputFilter",
    "OutputStreamFilter",
    "Pipeline",
    "TenantGuardPolicy",
    "ToolRule",
    "Verdict",
    "create_inspector",
    "guard_policy_from_data",
    "judge",
    "load_guard_policy",
    "load_guard_policy_text",
    "normalize",
]
