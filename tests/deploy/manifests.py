"""The Kubernetes manifests under deploy/kubernetes, read as the tests need them.

Objects come from the files a kustomization lists under ``resources`` (what ``kubectl apply -k``
applies, before kustomize adds the namespace and labels); containers are paired with their pod
spec, and ``expand`` does what the kubelet does to ``$(VAR)`` in command and args, with the
values the manifests give (or stand-ins for secrets and the pod name).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "kubernetes"
DEV_SERVICES = BASE / "dev-services"
KUSTOMIZATIONS = (BASE, DEV_SERVICES)
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
POD_NAME = "isthmus-gateway-equinix-fr5-5d8f7c9b6-x2k4q"
"""Stands in for ``metadata.name`` of a pod (the shape a Deployment's pods have)."""

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

Manifest = dict[str, Any]


def kustomization(root: Path) -> Manifest:
    data: Manifest = yaml.safe_load((root / "kustomization.yaml").read_text())
    return data


def load(root: Path = BASE) -> list[Manifest]:
    """Every object of the files the kustomization at ``root`` lists, in order."""
    objects: list[Manifest] = []
    for name in kustomization(root)["resources"]:
        for document in yaml.safe_load_all((root / name).read_text()):
            if document is not None:
                objects.append(document)
    return objects


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Manifest], kind: str, name: str) -> Manifest:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


@dataclass(frozen=True)
class Container:
    workload: Manifest
    spec: Manifest

    @property
    def id(self) -> str:
        return f"{self.workload['metadata']['name']}/{self.spec['name']}"

    @property
    def pod(self) -> Manifest:
        pod: Manifest = self.workload["spec"]["template"]["spec"]
        return pod

    @property
    def env(self) -> list[Manifest]:
        env: list[Manifest] = self.spec.get("env", [])
        return env

    @property
    def argv(self) -> list[str]:
        return [str(a) for a in (*self.spec.get("command", ()), *self.spec.get("args", ()))]

    def mount_of(self, path: str) -> tuple[Manifest, Manifest] | None:
        """The (volumeMount, volume) whose mount path holds ``path``, the deepest one."""
        best: tuple[Manifest, Manifest] | None = None
        for mount in self.spec.get("volumeMounts", ()):
            root = mount["mountPath"].rstrip("/")
            if path == root or path.startswith(root + "/"):
                volume = next(v for v in self.pod["volumes"] if v["name"] == mount["name"])
                if best is None or len(root) > len(best[0]["mountPath"]):
                    best = (mount, volume)
        return best


def containers(objects: list[Manifest]) -> Iterator[Container]:
    for workload in objects:
        if workload["kind"] in WORKLOAD_KINDS:
            for spec in workload["spec"]["template"]["spec"]["containers"]:
                yield Container(workload, spec)


def isthmus_containers(objects: list[Manifest] | None = None) -> list[Container]:
    """The containers that run the Isthmus image (the rest are the dev services)."""
    return [c for c in containers(objects or load()) if c.spec["image"] == "isthmus"]


def config_map_data(objects: list[Manifest], name: str) -> dict[str, str]:
    data: dict[str, str] = named(objects, "ConfigMap", name)["data"]
    return data


def env_value(objects: list[Manifest], variable: Manifest) -> str:
    """What a container's variable holds: its value, the ConfigMap's, or a stand-in."""
    if "value" in variable:
        return str(variable["value"])
    source = variable["valueFrom"]
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return config_map_data(objects, ref["name"])[ref["key"]]
    if "secretKeyRef" in source:
        if source["secretKeyRef"]["key"] == "db-url":
            return "postgresql://isthmus:secret@postgres.example.internal:5432/isthmus"
        return "secret-" + str(source["secretKeyRef"]["key"])
    if source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
        return POD_NAME
    raise AssertionError(f"no stand-in for {variable}")


def references(text: str) -> list[str]:
    """The variables ``$(NAME)`` in ``text`` (the kubelet's dependent expansion)."""
    return _REFERENCE.findall(text)


def expand(container: Container, objects: list[Manifest]) -> list[str]:
    """The argv as the process receives it."""
    values = {v["name"]: env_value(objects, v) for v in container.env}
    return [_REFERENCE.sub(lambda m: values[m.group(1)], arg) for arg in container.argv]


def option(container: Container, name: str) -> str:
    """The value the container's command line gives option ``name`` (before expansion)."""
    argv = container.argv
    return argv[argv.index(name) + 1]


def mounted_source(container: Container, path: str) -> tuple[Manifest, str]:
    """The volume holding ``path`` and the path inside it."""
    found = container.mount_of(path)
    assert found is not None, f"{path} is not on any volume of {container.id}"
    mount, volume = found
    return volume, path[len(mount["mountPath"].rstrip("/")) + 1 :]


def lay_out_fabric(container: Container, root: Path) -> Path:
    """Write the fabric ConfigMap's files where the container's volume puts them."""
    generator = next(
        g for g in kustomization(BASE)["configMapGenerator"] if g["name"] == "isthmus-fabric"
    )
    files = {Path(f).name: BASE / f for f in generator["files"]}
    volume, inside = mounted_source(container, option(container, "--fabric"))
    for item in volume["configMap"]["items"]:
        assert item["key"] in files, f"{item['key']} is not in the generated ConfigMap"
        target = root / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[item["key"]].read_bytes())
    assert {i["key"] for i in volume["configMap"]["items"]} == set(files), "files left unmounted"
    return root / inside
