"""The guard policy: which inspectors run, and what each finding leads to, per tenant.

Invariants:

- The file format is strict (``extra="forbid"``, frozen) and every problem is reported with
  file, line, column and field, as fabric files are (``isthmus.fabric.problems``).
- An action is resolved from the most specific setting that exists, in this order: the
  tenant's setting for the direction, the tenant's setting, the global setting for the
  direction, the global setting, ``default_action``; within each, the exact category
  (``pii:email``) before its family (``pii``). So a policy only states exceptions.
- A tenant's lists *add* to the global deny and protected domains; its allow list, tool policy
  and token caps *replace* the global ones when given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from isthmus.fabric.problems import FabricError, Problem
from isthmus.fabric.schema import Name
from isthmus.fabric.schema_errors import problems_from_validation
from isthmus.fabric.yamlsafe import SourceMap, load_yaml_file, load_yaml_text
from isthmus.guard.findings import CATEGORIES, Action, Direction, ToolRule, family_of
from isthmus.guard.registry import DEFAULT_DIRECTIONS, INSPECTORS

__all__ = [
    "DEFAULT_ACTIONS",
    "ConsumptionPolicy",
    "GuardPolicy",
    "TenantGuardPolicy",
    "TenantSettings",
    "ToolConstraint",
    "ToolPolicy",
    "UrlPolicy",
    "guard_policy_from_data",
    "load_guard_policy",
    "load_guard_policy_text",
]

DEFAULT_ACTIONS: dict[str, Action] = {
    "prompt_injection": "block",
    "jailbreak": "block",
    "indirect_injection": "redact",
    "pii": "redact",
    "secret": "redact",
    "system_prompt_leak": "redact",
    "unsafe_output": "redact",
    "url": "flag",
    "tool_call": "block",
    "consumption": "block",
}


def _check_category(key: str) -> str:
    family, _, entity = key.partition(":")
    if family not in CATEGORIES:
        raise ValueError(f"unknown category {key!r}; families: {', '.join(CATEGORIES)}")
    if entity and family not in ("pii", "secret"):
        raise ValueError(f"only pii and secret take an entity after ':' (found {key!r})")
    return key


def _check_inspector(name: str) -> str:
    if name not in INSPECTORS:
        raise ValueError(f"unknown inspector {name!r}; known: {', '.join(sorted(INSPECTORS))}")
    return name


def _check_domain(domain: str) -> str:
    cleaned = domain.strip().lower().rstrip(".")
    if not cleaned or "/" in cleaned or " " in cleaned:
        raise ValueError(f"{domain!r} is not a domain name (write example.com, no scheme or path)")
    return cleaned


Category = Annotated[str, AfterValidator(_check_category)]
InspectorName = Annotated[str, AfterValidator(_check_inspector)]
Domain = Annotated[str, AfterValidator(_check_domain)]
Actions = dict[Category, Action]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ToolConstraint(_Spec):
    """Constraints on one tool's arguments."""

    deny: tuple[Literal["pii", "secret", "url"], ...] = Field(
        default=(), description="families of findings refused inside the arguments"
    )
    max_argument_chars: Annotated[int, Field(ge=1)] | None = None


class ToolPolicy(_Spec):
    allowed: tuple[str, ...] = Field(default=("*",), description="tool names or fnmatch patterns")
    constraints: dict[str, ToolConstraint] = Field(default_factory=dict)


class UrlPolicy(_Spec):
    allow_domains: tuple[Domain, ...] = Field(
        default=(), description="if not empty, links to any other domain are findings"
    )
    deny_domains: tuple[Domain, ...] = ()
    protected_domains: tuple[Domain, ...] = Field(
        default=(), description="your own brands: look-alikes of these are findings"
    )


class ConsumptionPolicy(_Spec):
    max_prompt_tokens: Annotated[int, Field(ge=1)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None


class TenantGuardPolicy(_Spec):
    """One tenant's exceptions to the global policy."""

    enabled: bool = True
    actions: Actions = Field(default_factory=dict)
    by_direction: dict[Direction, Actions] = Field(default_factory=dict)
    min_score: Annotated[float, Field(ge=0, le=1)] | None = None
    tools: ToolPolicy | None = None
    urls: UrlPolicy | None = None
    consumption: ConsumptionPolicy | None = None
    canary: str | None = Field(
        default=None,
        description="a token planted in the system prompt; seeing it in output is a leak",
    )


class TenantSettings(_Spec):
    """What inspectors need to know about a tenant, resolved from the policy."""

    enabled: bool
    min_score: float
    allowed_tools: frozenset[str]
    tool_rules: dict[str, ToolRule]
    allow_domains: frozenset[str]
    deny_domains: frozenset[str]
    protected_domains: frozenset[str]
    max_prompt_tokens: int | None
    max_output_tokens: int | None
    canary: str | None


class GuardPolicy(_Spec):
    """The whole guard policy document (also the ``guard`` section of a policy bundle)."""

    version: Literal[1] = 1
    enabled: bool = True
    inspectors: dict[Direction, tuple[InspectorName, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_DIRECTIONS)
    )
    actions: Actions = Field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    by_direction: dict[Direction, Actions] = Field(default_factory=dict)
    default_action: Action = "flag"
    min_score: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5, description="findings scoring below this are not acted on"
    )
    stream_lookback_chars: Annotated[int, Field(ge=48, le=16384)] = 256
    tools: ToolPolicy = ToolPolicy()
    urls: UrlPolicy = UrlPolicy()
    consumption: ConsumptionPolicy = ConsumptionPolicy()
    tenants: dict[Name, TenantGuardPolicy] = Field(default_factory=dict)

    def direction_inspectors(self, direction: Direction) -> tuple[str, ...]:
        return self.inspectors.get(direction, DEFAULT_DIRECTIONS[direction])

    def action_for(self, tenant: str, direction: Direction, category: str) -> Action:
        """The action for ``category`` (see the module invariants for the order)."""
        family = family_of(category)
        override = self.tenants.get(tenant)
        layers: list[Mapping[str, Action]] = []
        if override is not None:
            layers += [override.by_direction.get(direction, {}), override.actions]
        layers += [self.by_direction.get(direction, {}), self.actions]
        for layer in layers:
            if category in layer:
                return layer[category]
            if family in layer:
                return layer[family]
        return self.default_action

    def settings_for(self, tenant: str) -> TenantSettings:
        override = self.tenants.get(tenant) or TenantGuardPolicy()
        tools = override.tools or self.tools
        urls = override.urls or UrlPolicy()
        consumption = override.consumption or self.consumption
        return TenantSettings(
            enabled=self.enabled and override.enabled,
            min_score=self.min_score if override.min_score is None else override.min_score,
            allowed_tools=frozenset(tools.allowed),
            tool_rules={
                name: ToolRule(frozenset(c.deny), c.max_argument_chars)
                for name, c in tools.constraints.items()
            },
            allow_domains=frozenset(urls.allow_domains or self.urls.allow_domains),
            deny_domains=frozenset(self.urls.deny_domains) | frozenset(urls.deny_domains),
            protected_domains=frozenset(self.urls.protected_domains)
            | frozenset(urls.protected_domains),
            max_prompt_tokens=consumption.max_prompt_tokens,
            max_output_tokens=consumption.max_output_tokens,
            canary=override.canary,
        )


def guard_policy_from_data(data: Any, source: SourceMap) -> GuardPolicy:
    """Validate parsed YAML/JSON into a ``GuardPolicy`` or raise ``FabricError`` (located)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FabricError([Problem(source.locate(()), "", "a guard policy must be a mapping")])
    try:
        return GuardPolicy.model_validate(data)
    except ValidationError as exc:
        raise FabricError(problems_from_validation(GuardPolicy, exc, source)) from None


def load_guard_policy(path: str | Path) -> GuardPolicy:
    """Read and validate a guard policy YAML file."""
    data, source = load_yaml_file(path)
    return guard_policy_from_data(data, source)


def load_guard_policy_text(text: str, file: str = "<text>") -> GuardPolicy:
    data, source = load_yaml_text(text, file)
    return guard_policy_from_data(data, source)
