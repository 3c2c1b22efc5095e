"""The kustomizations build (with ``kubectl kustomize``, when kubectl is installed) into what the
files say, and every object is valid against the Kubernetes API schemas (with the
``kubernetes-validate`` package, when installed: it bundles the schemas, so no network)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .manifests import BASE, KUSTOMIZATIONS, load

KUBERNETES_VERSION = "1.37.0"
KUBECTL = shutil.which("kubectl")


def build(root: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(root)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d is not None]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize("root", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_the_kustomization_builds_into_its_files(root: Path) -> None:
    built = build(root)
    listed = {(o["kind"], o["metadata"]["name"]) for o in load(root)}
    names = {(o["kind"], o["metadata"]["name"]) for o in built}
    assert listed <= names
    for o in built:
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == "isthmus", o["metadata"]["name"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_the_built_pods_mount_the_generated_fabric_and_run_the_tagged_image() -> None:
    built = build(BASE)
    (fabric,) = [
        o["metadata"]["name"]
        for o in built
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("isthmus-fabric-")
    ]
    assert "fabric.yaml" in next(o for o in built if o["metadata"]["name"] == fabric)["data"]
    pods = [o["spec"]["template"]["spec"] for o in built if o["kind"] == "Deployment"]
    assert len(pods) == 3
    for pod in pods:
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["fabric"]["configMap"]["name"] == fabric
        assert [c["image"] for c in pod["containers"]] == ["isthmus:0.1.0"]


@pytest.mark.parametrize("root", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_object_is_valid_kubernetes(root: Path) -> None:
    validator = pytest.importorskip("kubernetes_validate")
    objects = build(root) if KUBECTL is not None else load(root)
    for o in objects:
        validator.validate(o, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_refuses_a_wrong_field() -> None:
    validator = pytest.importorskip("kubernetes_validate")
    (deployment, *_) = [o for o in load(BASE) if o["kind"] == "Deployment"]
    deployment["spec"]["replica"] = 2
    with pytest.raises(validator.ValidationError):
        validator.validate(deployment, KUBERNETES_VERSION, strict=True)
