"""Inspectors by the name used in policy files, imported lazily.

Invariant: ``INSPECTORS`` maps every configurable name to ``"module:attribute"``; nothing is
imported until an inspector is asked for, so a policy that does not name the classifier never
loads its weights. Each entry builds with no arguments (per-tenant settings arrive in the
``InspectionContext``), and every one satisfies the ``Inspector`` protocol — one contract test
runs over all of them.
"""

from __future__ import annotations

import functools
import importlib

from isthmus.guard.findings import Direction, Inspector

__all__ = ["DEFAULT_DIRECTIONS", "INSPECTORS", "UnknownInspector", "create_inspector"]

INSPECTORS: dict[str, str] = {
    "injection_rules": "isthmus.guard.rules:InjectionRules",
    "indirect_rules": "isthmus.guard.rules:IndirectInjectionRules",
    "injection_classifier": "isthmus.guard.classifier:InputClassifier",
    "indirect_classifier": "isthmus.guard.classifier:ContextClassifier",
    "pii": "isthmus.guard.pii:PiiInspector",
    "secrets": "isthmus.guard.credentials:SecretInspector",
    "urls": "isthmus.guard.urls:UrlInspector",
    "leakage": "isthmus.guard.leakage:SystemPromptLeakInspector",
    "unsafe_output": "isthmus.guard.unsafe_output:UnsafeOutputInspector",
    "consumption": "isthmus.guard.consumption:ConsumptionInspector",
    "tool_calls": "isthmus.guard.tools:ToolCallInspector",
}

DEFAULT_DIRECTIONS: dict[Direction, tuple[str, ...]] = {
    "input": ("injection_rules", "injection_classifier", "pii", "secrets", "urls", "consumption"),
    "context": ("indirect_rules", "indirect_classifier", "pii", "secrets", "urls"),
    "output": ("leakage", "pii", "secrets", "urls", "unsafe_output"),
}
"""Which inspectors each direction runs unless a policy says otherwise."""


class UnknownInspector(KeyError):
    """A policy named an inspector that is not registered."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown inspector {self.name!r}; known: {', '.join(sorted(INSPECTORS))}"


@functools.cache
def create_inspector(name: str) -> Inspector:
    """The inspector registered as ``name`` (built once per process: inspectors are pure)."""
    target = INSPECTORS.get(name)
    if target is None:
        raise UnknownInspector(name)
    module_name, attribute = target.split(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    inspector: Inspector = factory()
    return inspector
