"""Property: over random fabrics, rules and workloads, no plan ever breaks a sovereignty rule.

Every leg of every placement (failover legs included) is checked against the policy's reference
semantics (``isthmus.policy.explain``, clause by clause), not the compiled tables the planner
reads: processing at the site by the model; each demand metro's requests reaching it over some
allowed path; each dataset read where it lives, read remotely, or copied, as the leg says.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import (
    Accelerator,
    DataClass,
    Dataset,
    FabricSpec,
    Link,
    Metro,
    ModelRules,
    ModelSpec,
    PerfProfile,
    SiteConditions,
    SiteSpec,
    SovereigntyRule,
)
from isthmus.network.paths import Network
from isthmus.placement import WorkloadSet, WorkloadsSpec, assess, plan
from isthmus.placement.optimizer import PlanState
from isthmus.policy import explain
from isthmus.policy.checks import inside

CODES = ["DE", "FR", "NL", "US", "US-CA", "JP", "GB", "SG"]
GROUPS = {"EU": ("DE", "FR", "NL"), "WEST": ("EU", "US", "GB")}
ZONES = CODES + list(GROUPS)
CLASSES = ["public", "pii", "phi", "secret"]  # "secret" is covered by no rule: never placed
KINDS = ["cloud_region", "colo", "on_prem", "edge", "neocloud"]

zones = st.lists(st.sampled_from(ZONES), max_size=2, unique=True).map(tuple)
# a rule restricts each aspect only now and then, so plans place enough to be worth checking
maybe_zones = st.one_of(st.just(()), st.just(()), zones)
sometimes = st.sampled_from([False, False, False, True])


@st.composite
def fabrics(draw: Any) -> FabricSpec:
    n_sites = draw(st.integers(2, 7))
    sites = []
    for i in range(n_sites):
        jurisdiction = draw(st.sampled_from(CODES))
        sites.append(
            SiteSpec(
                name=f"s{i}",
                kind=draw(st.sampled_from(KINDS)),
                provider=f"p{draw(st.integers(0, 2))}",
                city="c",
                country=jurisdiction.split("-")[0],
                jurisdiction=jurisdiction,
                lat_deg=draw(st.floats(-50, 60)),
                lon_deg=draw(st.floats(-120, 140)),
                failure_domain=f"d{draw(st.integers(0, 3))}",
                tags={
                    "key_custody": draw(st.sampled_from(["customer", "provider"])),
                    "hipaa_baa": draw(st.sampled_from(["true", "false"])),
                },
                accelerators=(
                    Accelerator(
                        type="H100",
                        count=draw(st.integers(1, 8)),
                        on_demand_usd_per_device_hour=draw(st.floats(0.5, 8)),
                        reserved_usd_per_device_hour=draw(st.one_of(st.none(), st.floats(0.3, 5))),
                        spot_usd_per_device_hour=draw(st.one_of(st.none(), st.floats(0.2, 2))),
                    ),
                ),
            )
        )
    metros = [
        Metro(
            name=f"M{j}",
            city="m",
            country=code.split("-")[0],
            jurisdiction=code,
            lat_deg=draw(st.floats(-50, 60)),
            lon_deg=draw(st.floats(-120, 140)),
        )
        for j, code in enumerate(draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=3)))
    ]
    links = []
    for _ in range(draw(st.integers(0, 5))):
        a = draw(st.sampled_from([s.name for s in sites] + [m.name for m in metros]))
        b = draw(st.sampled_from([s.name for s in sites]))
        if a != b:
            links.append(Link(src=a, dst=b, rtt_ms=draw(st.floats(1, 60)), private=True))
    rules = [SovereigntyRule(name="open", data_classes=("public",))]
    for r, classes in enumerate(
        draw(
            st.lists(
                st.lists(st.sampled_from(CLASSES[1:3]), min_size=1, max_size=2, unique=True),
                min_size=1,
                max_size=3,
            )
        )
    ):
        rules.append(
            SovereigntyRule(
                name=f"r{r}",
                data_classes=tuple(classes),
                process_in=draw(maybe_zones),
                store_in=draw(maybe_zones),
                transit_in=draw(maybe_zones),
                require_private_path=draw(sometimes),
                sites=SiteConditions(
                    site_kinds=tuple(draw(st.lists(st.sampled_from(KINDS), max_size=2)))
                    if draw(sometimes)
                    else (),
                    deny_tags={"key_custody": "provider"} if draw(sometimes) else {},
                    require_tags={"hipaa_baa": "true"} if draw(sometimes) else {},
                ),
                models=ModelRules(hosted_in=draw(maybe_zones)),
            )
        )
    datasets = [
        Dataset(
            name=f"ds{k}",
            site=draw(st.sampled_from([s.name for s in sites])),
            size_gb=draw(st.floats(1, 500)),
            data_class=draw(st.sampled_from(CLASSES)),
            residency=draw(zones),
        )
        for k in range(draw(st.integers(0, 3)))
    ]
    return FabricSpec(
        name="random",
        jurisdiction_groups=GROUPS,
        data_classes=tuple(DataClass(name=c, level=i) for i, c in enumerate(CLASSES)),
        sites=tuple(sites),
        metros=tuple(metros),
        links=tuple(links),
        models=(
            ModelSpec(
                name="m",
                params_b=8,
                licence="test",
                profiles=(
                    PerfProfile(
                        accelerator="H100", prefill_tokens_per_s=20000, decode_tokens_per_s=120
                    ),
                ),
            ),
        ),
        datasets=tuple(datasets),
        policies=tuple(rules),
    )


@st.composite
def cases(draw: Any) -> tuple[FabricSpec, WorkloadsSpec]:
    spec = draw(fabrics())
    metros = [m.name for m in spec.metros]
    datasets = [d.name for d in spec.datasets]
    items = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["online_inference", "rag", "batch_inference", "fine_tuning"]))
        if kind == "rag" and not datasets:
            kind = "online_inference"
        item: dict[str, Any] = {
            "name": f"w{i}",
            "kind": kind,
            "model": "m",
            "data_class": draw(st.sampled_from(["public", "pii", "pii", "phi", "phi", "secret"])),
        }
        if kind in ("online_inference", "rag"):
            chosen = draw(st.lists(st.sampled_from(metros), min_size=1, max_size=2, unique=True))
            item["demand"] = [{"metro": m, "mean_rps": 0.2, "peak_rps": 0.5} for m in chosen]
            item["slo"] = {"ttft_p95_ms": draw(st.sampled_from([150, 400, 5000]))}
            item["redundancy"] = {"n": 1, "k": draw(st.integers(0, 1))}
            if kind == "rag":
                item["datasets"] = [
                    {"name": draw(st.sampled_from(datasets)), "access": "per_request"}
                ]
        else:
            item["slo"] = {"deadline_hours": 48}
            if kind == "batch_inference":
                item["requests"] = 5000
            else:
                item["train_tokens_b"] = 0.01
                item["method"] = "lora"
            if datasets and draw(st.sampled_from([True, True, False])):
                item["datasets"] = [{"name": draw(st.sampled_from(datasets))}]
        items.append(item)
    return spec, WorkloadsSpec.model_validate({"workloads": items})


def _path_allowed(fabric: Fabric, network: Network, data_class: str, src: str, dst: str) -> bool:
    for private in (False, True):
        path = network.path(src, dst, private_only=private)
        if path is None:
            continue
        verdict, _ = explain(fabric, data_class, dst, path=path)
        if verdict.allowed:
            return True
    return False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from(["milp", "scale"]))
def test_plans_never_break_a_sovereignty_rule(
    case: tuple[FabricSpec, WorkloadsSpec], method: str
) -> None:
    spec, workload_spec = case
    fabric = Fabric(spec)
    workloads = WorkloadSet(workload_spec)
    result = plan(fabric, workloads, method=method)  # type: ignore[arg-type]
    network = Network(fabric)
    assert len(result.placements) + len(result.unplaced) == len(workload_spec.workloads)
    for placement in result.placements:
        assert placement.data_class != "secret", "an uncovered class must fail closed"
        workload = workloads.by_name(placement.workload)
        assert workload is not None
        for leg in placement.legs:
            verdict, _ = explain(fabric, placement.data_class, leg.site, model="m")
            assert verdict.allowed, (placement.workload, leg.site, verdict)
            for demand in workload.demand:
                assert _path_allowed(
                    fabric, network, placement.data_class, demand.metro, leg.site
                ), (placement.workload, demand.metro, leg.site)
            for move in leg.data:
                dataset = fabric.datasets[move.dataset]
                processed, _ = explain(fabric, dataset.data_class, leg.site, model="m")
                assert processed.allowed, (move, processed)
                if move.strategy == "local":
                    assert dataset.site == leg.site
                    continue
                assert _path_allowed(fabric, network, dataset.data_class, dataset.site, leg.site), (
                    move
                )
                if move.strategy == "replicate":
                    stored, _ = explain(fabric, dataset.data_class, leg.site, action="store")
                    assert stored.allowed, (move, stored)
                    if dataset.residency:
                        zone = fabric.jurisdictions(dataset.residency)
                        assert inside(fabric.sites[leg.site].jurisdiction_code, zone)
    state = result.state
    assert isinstance(state, PlanState)
    ours = {
        w: [int(state.candidates.slot[leg]) for leg in legs] for w, legs in state.legs_of.items()
    }
    assert assess(state.ctx, state.needs, ours, "plan").sovereignty_violations == 0
