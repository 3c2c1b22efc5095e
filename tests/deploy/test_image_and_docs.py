"""The image and the instructions agree with the manifests: the Dockerfile's user, entrypoint,
ports and install; what .dockerignore keeps out; the secrets deploy/README.md tells people to
create cover every secret and ConfigMap the manifests use but do not define."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

from typer.testing import CliRunner

from isthmus.cli.main import app

from .manifests import (
    DEPLOY,
    REPO,
    Manifest,
    isthmus_containers,
    kustomization,
    load,
    mounted_source,
    option,
)

OBJECTS = load()
CONTAINERS = isthmus_containers(OBJECTS)
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
README = (DEPLOY / "README.md").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of every ``NAME`` instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.+)$", text, re.MULTILINE)]


def test_the_image_is_python_3_11_slim_with_the_locked_install() -> None:
    assert all(base.split()[0] == "python:3.11-slim" for base in instructions("FROM"))
    assert any("pip install -c constraints.txt ." in run for run in instructions("RUN"))


def test_the_image_runs_isthmus_as_the_user_the_pods_require() -> None:
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["isthmus"]
    user = instructions("USER")[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0
    for container in CONTAINERS:
        assert container.pod["securityContext"]["runAsUser"] == int(user)
        assert container.pod["securityContext"]["fsGroup"] == int(user)
    exposed = {int(port) for line in instructions("EXPOSE") for port in line.split()}
    ports = {p["containerPort"] for c in CONTAINERS for p in c.spec["ports"]}
    assert ports <= exposed


def test_the_build_context_keeps_what_the_image_copies_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns
        )

    copied = [
        source
        for line in instructions("COPY")
        if not line.startswith("--from")
        for source in line.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert not ignored(source), source
    for unwanted in (".venv", "bench/.venvs", ".git", "bench/results", "isthmus/__pycache__"):
        assert ignored(unwanted), unwanted


def created_by_readme() -> dict[tuple[str, str], set[str]]:
    """(kind, name) -> keys, for every ``kubectl create secret generic|configmap`` shown."""
    text = re.sub(r"\\\n\s*", " ", README)
    created: dict[tuple[str, str], set[str]] = {}
    for match in re.finditer(r"create (secret generic|configmap) ([\w.-]+)([^\n]*)", text):
        kind = "Secret" if match.group(1).startswith("secret") else "ConfigMap"
        keys = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", match.group(3)))
        created.setdefault((kind, match.group(2)), set()).update(keys)
    return created


def referenced_from_outside() -> dict[tuple[str, str], set[str]]:
    """(kind, name) -> keys of the secrets and ConfigMaps the base uses but does not define."""
    defined = {("ConfigMap", o["metadata"]["name"]) for o in OBJECTS if o["kind"] == "ConfigMap"}
    defined |= {
        ("ConfigMap", g["name"])
        for g in kustomization(DEPLOY / "kubernetes").get("configMapGenerator", ())
    }
    needed: dict[tuple[str, str], set[str]] = {}

    def need(kind: str, name: str, key: str | None) -> None:
        if (kind, name) not in defined:
            needed.setdefault((kind, name), set()).update({key} if key else set())

    for container in CONTAINERS:
        for variable in container.env:
            source: Manifest = variable.get("valueFrom", {})
            for kind, field in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if field in source:
                    need(kind, source[field]["name"], source[field]["key"])
        for source in container.spec.get("envFrom", ()):
            ref = source.get("secretRef") or source.get("configMapRef")
            assert ref is not None and ref.get("optional") is True, source
            need("Secret" if "secretRef" in source else "ConfigMap", ref["name"], None)
        for flag in ("--signing-key", "--trusted-key"):
            if flag in container.argv:
                volume, inside = mounted_source(container, option(container, flag))
                if "secret" in volume:
                    need("Secret", volume["secret"]["secretName"], inside)
                else:
                    need("ConfigMap", volume["configMap"]["name"], inside)
    return needed


def test_the_readme_creates_every_secret_and_key_the_manifests_reference() -> None:
    created = created_by_readme()
    needed = referenced_from_outside()
    assert ("Secret", "isthmus-signing-key") in needed  # the check sees what it must
    for what, keys in needed.items():
        assert what in created, f"deploy/README.md never creates {what}"
        assert keys <= created[what], f"{what}: README lacks {keys - created[what]}"


def test_the_readme_uses_the_projects_own_key_generator(tmp_path: Path) -> None:
    keygen = re.search(r"isthmus policy keygen (\S+) --name (\S+)", README)
    assert keygen is not None
    stem = keygen.group(2)
    result = CliRunner().invoke(app, ["policy", "keygen", str(tmp_path), "--name", stem])
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} == {f"{stem}.key", f"{stem}.pub"}
    created = created_by_readme()
    assert f"{stem}.key" in created[("Secret", "isthmus-signing-key")]
    assert f"{stem}.pub" in created[("ConfigMap", "isthmus-trusted-keys")]
