"""The manifests hang together: files listed, labels and selectors, ports, security, references."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .manifests import (
    BASE,
    KUSTOMIZATIONS,
    WORKLOAD_KINDS,
    Container,
    Manifest,
    containers,
    isthmus_containers,
    kustomization,
    load,
    named,
    of_kind,
    references,
)

OBJECTS = {root.name: load(root) for root in KUSTOMIZATIONS}
ALL = [o for objects in OBJECTS.values() for o in objects]


def _id(o: Manifest) -> str:
    return f"{o['kind']}/{o['metadata']['name']}"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("root", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_manifest_file_parses_and_is_listed(root: Path) -> None:
    listed = set(kustomization(root)["resources"])
    on_disk = {p.name for p in root.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for name in listed:
        for document in yaml.safe_load_all((root / name).read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(document), name


def test_object_names_are_unique() -> None:
    ids = [_id(o) for o in ALL]
    assert len(ids) == len(set(ids))


def test_the_base_has_the_control_plane_and_two_sites() -> None:
    base = OBJECTS[BASE.name]
    deployments = {o["metadata"]["name"] for o in of_kind(base, "Deployment")}
    assert deployments == {
        "isthmus-control",
        "isthmus-gateway-equinix-fr5",
        "isthmus-gateway-aws-us-east-1",
    }
    assert named(base, "Namespace", "isthmus")
    assert named(base, "Deployment", "isthmus-control")["spec"]["replicas"] == 2


@pytest.mark.parametrize("workload", [o for o in ALL if o["kind"] in WORKLOAD_KINDS], ids=_id)
def test_a_workload_selects_its_own_pods(workload: Manifest) -> None:
    selector = workload["spec"]["selector"]["matchLabels"]
    assert _selects(selector, workload["spec"]["template"]["metadata"]["labels"])
    others = [o for o in ALL if o["kind"] in WORKLOAD_KINDS and o is not workload]
    for other in others:
        assert not _selects(selector, other["spec"]["template"]["metadata"]["labels"]), _id(other)


@pytest.mark.parametrize("service", [o for o in ALL if o["kind"] == "Service"], ids=_id)
def test_a_service_selects_the_pods_of_exactly_one_workload_on_a_port_they_declare(
    service: Manifest,
) -> None:
    selector = service["spec"]["selector"]
    chosen = [
        o
        for o in ALL
        if o["kind"] in WORKLOAD_KINDS
        and _selects(selector, o["spec"]["template"]["metadata"]["labels"])
    ]
    assert len(chosen) == 1, [_id(o) for o in chosen]
    declared = {
        port[key]
        for c in chosen[0]["spec"]["template"]["spec"]["containers"]
        for port in c.get("ports", ())
        for key in ("name", "containerPort")
        if key in port
    }
    for port in service["spec"]["ports"]:
        assert port.get("targetPort", port["port"]) in declared


@pytest.mark.parametrize("budget", [o for o in ALL if o["kind"] == "PodDisruptionBudget"], ids=_id)
def test_a_disruption_budget_covers_one_workload_with_room_to_drain(budget: Manifest) -> None:
    workload = named(ALL, "Deployment", budget["metadata"]["name"])
    assert budget["spec"]["selector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["minAvailable"] < workload["spec"]["replicas"]


def test_every_gateway_has_a_service_a_budget_and_spreads() -> None:
    base = OBJECTS[BASE.name]
    gateways = [
        o
        for o in of_kind(base, "Deployment")
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    assert len(gateways) == 2
    for gateway in gateways:
        name = gateway["metadata"]["name"]
        assert named(base, "Service", name) and named(base, "PodDisruptionBudget", name)
        pod = gateway["spec"]["template"]["spec"]
        keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in pod["topologySpreadConstraints"]:
            assert (
                constraint["labelSelector"]["matchLabels"]
                == (gateway["spec"]["selector"]["matchLabels"])
            )
        site = gateway["metadata"]["labels"]["isthmus/site"]
        assert name == f"isthmus-gateway-{site}"


@pytest.mark.parametrize("container", isthmus_containers(), ids=lambda c: c.id)
def test_isthmus_pods_run_unprivileged_on_a_read_only_root(container: Container) -> None:
    pod, spec = container.pod, container.spec
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    security = spec["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    writable = [
        m for m in spec["volumeMounts"] if not m.get("readOnly") and m["mountPath"] != "/tmp"
    ]
    for mount in writable:  # the only writable places are scratch space
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert "emptyDir" in volume, mount
    assert container.mount_of("/tmp") is not None
    resources = spec["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


@pytest.mark.parametrize("container", list(containers(ALL)), ids=lambda c: c.id)
def test_probes_use_declared_ports_and_resources_are_set(container: Container) -> None:
    spec = container.spec
    names = {p.get("name") for p in spec.get("ports", ())}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = spec.get(kind)
        if probe and "httpGet" in probe:
            assert probe["httpGet"]["port"] in names, kind
    assert spec["resources"]["limits"]["memory"]


@pytest.mark.parametrize("container", list(containers(ALL)), ids=lambda c: c.id)
def test_variables_the_args_use_are_defined_and_config_keys_exist(container: Container) -> None:
    defined = [v["name"] for v in container.env]
    assert len(defined) == len(set(defined))
    for arg in container.argv:
        for name in references(arg):
            assert name in defined, f"$({name}) in {arg!r} is not set"
    base = OBJECTS[BASE.name]
    for variable in container.env:
        ref = variable.get("valueFrom", {}).get("configMapKeyRef")
        if ref is not None:
            data = named(base, "ConfigMap", ref["name"])["data"]
            assert ref["key"] in data, variable


def test_gateway_pods_are_announced_to_prometheus_on_their_port() -> None:
    for container in isthmus_containers():
        if container.argv[0] != "gateway":
            continue
        annotations = container.workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        port = container.argv[container.argv.index("--port") + 1]
        assert annotations["prometheus.io/port"] == port
        assert {p["containerPort"] for p in container.spec["ports"]} == {int(port)}
