"""Sovereignty policy: rules compiled into fast, fail-closed verdicts that name their rule."""

from isthmus.policy.checks import Action, Check, PathFacts
from isthmus.policy.compiled import CompiledPolicy, Verdict, compile_policy, explain

__all__ = ["Action", "Check", "CompiledPolicy", "PathFacts", "Verdict", "compile_policy", "explain"]
