"""Each Isthmus container's command line is one the real ``isthmus`` CLI accepts, and what it
names exists: variables Isthmus reads, mounted files, the fabric's sites, a valid gateway id."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from isthmus.cli.main import app
from isthmus.fabric.loader import load_fabric
from isthmus.mesh.attach import MeshOptions
from isthmus.mesh.shared_state import shared_state_from_url

from .manifests import (
    REPO,
    Container,
    expand,
    isthmus_containers,
    lay_out_fabric,
    load,
    mounted_source,
)

OBJECTS = load()
CONTAINERS = isthmus_containers(OBJECTS)
GATEWAYS = [c for c in CONTAINERS if c.argv[0] == "gateway"]
CLI = typer.main.get_command(app)

_ISTHMUS_VARIABLE = re.compile(r"\"(ISTHMUS_[A-Z0-9_]+)\"")


def _id(container: Container) -> str:
    return container.id


def subcommand(name: str) -> Any:
    command = getattr(CLI, "commands", {}).get(name)
    assert command is not None, f"isthmus has no subcommand {name!r}"
    return command


def parse(argv: list[str]) -> Any:
    """The click context ``isthmus ARGV`` gets; raises as the CLI would on bad usage."""
    name, *rest = argv
    parent = CLI.make_context("isthmus", list(argv))
    return subcommand(name).make_context(name, rest, parent=parent)


def read_by_isthmus() -> set[str]:
    """Every ``ISTHMUS_*`` variable name the package spells out as a string of its own."""
    names: set[str] = set()
    for path in (REPO / "isthmus").rglob("*.py"):
        names.update(_ISTHMUS_VARIABLE.findall(path.read_text()))
    return names


def envvars_of(command: Any) -> set[str]:
    found: set[str] = set()
    for param in command.params:
        if isinstance(param.envvar, str):
            found.add(param.envvar)
        elif param.envvar:
            found.update(param.envvar)
    return found


def value(container: Container, option: str) -> str:
    argv = expand(container, OBJECTS)
    return argv[argv.index(option) + 1]


def test_there_are_a_control_plane_and_gateways_to_check() -> None:
    assert sorted(c.argv[0] for c in CONTAINERS) == ["control", "gateway", "gateway"]


@pytest.mark.parametrize("container", CONTAINERS, ids=_id)
def test_the_cli_accepts_the_arguments(container: Container) -> None:
    argv = expand(container, OBJECTS)
    context = parse(argv)
    assert context.params["host"] == "0.0.0.0"
    port = int(value(container, "--port"))
    assert context.params["port"] == port
    assert port in {p["containerPort"] for p in container.spec["ports"]}


@pytest.mark.parametrize("container", CONTAINERS, ids=_id)
def test_an_unknown_option_is_refused(container: Container) -> None:
    argv = expand(container, OBJECTS)
    with pytest.raises(typer.TyperException, match="--no-such-option"):
        parse([*argv, "--no-such-option", "x"])


@pytest.mark.parametrize("container", GATEWAYS, ids=_id)
def test_the_replicas_of_a_site_share_its_redis(container: Container) -> None:
    params = parse(expand(container, OBJECTS)).params
    assert params["redis_url"].startswith("redis://")
    # what the CLI does with --redis (no connection is made until the gateway starts)
    shared_state_from_url(params["redis_url"], params["site"], params["namespace"])
    databases = {value(g, "--redis") for g in GATEWAYS}
    assert len(databases) == len(GATEWAYS), "two sites share a Redis database"


@pytest.mark.parametrize("container", CONTAINERS, ids=_id)
def test_every_variable_set_is_read_by_isthmus_or_used_by_the_arguments(
    container: Container,
) -> None:
    readable = envvars_of(subcommand(container.argv[0])) | read_by_isthmus()
    used = {name for arg in container.argv for name in re.findall(r"\$\((\w+)\)", arg)}
    for variable in container.env:
        assert variable["name"] in readable | used, variable["name"]


def test_the_secrets_reach_the_variables_isthmus_reads() -> None:
    expected = {
        "control": {"ISTHMUS_ADMIN_TOKEN", "ISTHMUS_OPERATOR_TOKEN", "ISTHMUS_NATS_URL"},
        "gateway": {"ISTHMUS_CONTROL_TOKEN", "ISTHMUS_AUDIT_KEY"},
    }
    for container in CONTAINERS:
        names = {v["name"] for v in container.env}
        assert expected[container.argv[0]] <= names
        readable = envvars_of(subcommand(container.argv[0])) | read_by_isthmus()
        assert expected[container.argv[0]] <= readable


@pytest.mark.parametrize("container", GATEWAYS, ids=_id)
def test_a_gateway_follows_the_control_plane_as_the_cli_checks_it(container: Container) -> None:
    params = parse(expand(container, OBJECTS)).params
    options = MeshOptions(
        gateway_id=params["gateway_id"],
        state_dir=params["state_dir"],
        trusted_keys=tuple(params["trusted_key"]),
        nats_url=params["nats"],
        namespace=params["namespace"],
        control_url=params["control"],
    )
    options.check()  # raises ValueError with the CLI's own message
    assert options.nats_url and options.control_url and options.trusted_keys


@pytest.mark.parametrize("container", GATEWAYS, ids=_id)
def test_a_gateway_id_from_the_pod_name_fits(container: Container) -> None:
    argv = container.argv
    assert argv[argv.index("--gateway-id") + 1] == "$(POD_NAME)"
    field = next(v for v in container.env if v["name"] == "POD_NAME")
    assert field["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    longest = container.workload["metadata"]["name"] + "-" + "b" * 10 + "-" + "x" * 5
    params = parse(expand(container, OBJECTS)).params
    MeshOptions(
        gateway_id=longest, state_dir=params["state_dir"], trusted_keys=(Path("k"),)
    ).check()


@pytest.mark.parametrize("container", CONTAINERS, ids=_id)
def test_the_files_the_arguments_name_are_mounted(container: Container) -> None:
    argv = container.argv
    volume, inside = mounted_source(container, value(container, "--fabric"))
    assert volume["configMap"]["name"] == "isthmus-fabric"
    assert inside in {item["path"] for item in volume["configMap"]["items"]}
    if argv[0] == "control":
        volume, inside = mounted_source(container, value(container, "--signing-key"))
        assert volume["secret"]["secretName"] == "isthmus-signing-key"
        assert inside == "control-signing.key"
    else:
        volume, inside = mounted_source(container, value(container, "--trusted-key"))
        assert volume["configMap"]["name"] == "isthmus-trusted-keys"
        assert inside == "control-signing.pub"
        volume, inside = mounted_source(container, value(container, "--state-dir"))
        assert "emptyDir" in volume and inside == ""


@pytest.mark.parametrize("container", CONTAINERS, ids=_id)
def test_the_fabric_loads_as_mounted_and_holds_the_gateways_site(
    container: Container, tmp_path: Path
) -> None:
    fabric = load_fabric(lay_out_fabric(container, tmp_path))
    if container.argv[0] == "gateway":
        assert value(container, "--site") in fabric.sites
        labels = container.workload["spec"]["template"]["metadata"]["labels"]
        assert labels["isthmus/site"] == value(container, "--site")
