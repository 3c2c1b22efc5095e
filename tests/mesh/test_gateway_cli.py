"""`isthmus gateway` following a control plane: option errors for people, and a real run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from isthmus.bundle import write_keypair
from isthmus.cli.main import app
from isthmus.fabric.catalog import Fabric
from isthmus.mesh.protocol import GatewayStatus, Names
from isthmus.serving import bind_socket
from tests.mesh.conftest import NATS_URL, NEW_KEY, Signer, with_newco
from tests.mesh.helpers import publish, read_status

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["gateway", *args], env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--nats", NATS_URL], "--state-dir"),
        (["--nats", NATS_URL, "--state-dir", "{tmp}"], "--trusted-key"),
        (["--control", "example.org", "--state-dir", "{tmp}", "--trusted-key", "{key}"], "URL"),
        (["--gateway-id", "a.b", "--state-dir", "{tmp}", "--trusted-key", "{key}"], "gateway-id"),
        (["--nats", NATS_URL, "--state-dir", "{tmp}", "--trusted-key", "{tmp}/none.pem"], "none"),
        (
            [
                "--nats",
                NATS_URL,
                "--state-dir",
                "{tmp}",
                "--trusted-key",
                "{key}",
                "--redis",
                "redis://127.0.0.1:6379/0",
            ],
            "distinct --gateway-id",
        ),
    ],
)
def test_options_that_cannot_work_are_explained(
    tmp_path: Path, mini_path: Path, args: list[str], says: str
) -> None:
    key = tmp_path / "control.pub"
    write_keypair(Signer().key, tmp_path / "control.pem", key)
    filled = [a.replace("{tmp}", str(tmp_path)).replace("{key}", str(key)) for a in args]
    code, out = run("--site", "onprem-paris", "-f", str(mini_path), "--no-guard", *filled)
    assert code == 2, out
    assert says in out and "Traceback" not in out


def free_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def start_gateway(
    tmp_path: Path, mini_path: Path, names: Names, gateway_id: str, *extra: str
) -> tuple[subprocess.Popen[str], int]:
    """`isthmus gateway` in its own process, following NATS, trusting a key written to
    ``tmp_path``; returns the process and its port."""
    port = free_port()
    command = [
        sys.executable, "-m", "isthmus.cli.main", "gateway", "--site", "onprem-paris",
        "-f", str(mini_path), "--port", str(port), "--no-guard", "--no-log-decisions",
        "--gateway-id", gateway_id, "--nats", NATS_URL, "--namespace", names.namespace,
        "--trusted-key", str(tmp_path / "control.pub"), "--state-dir", str(tmp_path / "state"),
        *extra,
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
        text=True,
    )
    return process, port


def wait_serving(process: subprocess.Popen[str], port: int, deadline: float, what: str) -> None:
    """Until the gateway's /health answers 200; fail with ``what`` at the deadline or exit."""
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            pytest.fail(what)
        time.sleep(0.2)


@pytest.mark.slow
def test_the_gateway_command_follows_bundles_from_nats(
    tmp_path: Path, mini_path: Path, mini: Fabric, names: Names
) -> None:
    signer = Signer()
    write_keypair(signer.key, tmp_path / "control.pem", tmp_path / "control.pub")
    process, port = start_gateway(tmp_path, mini_path, names, "paris-1")
    models = f"http://127.0.0.1:{port}/v1/models"
    auth = {"authorization": f"Bearer {NEW_KEY}"}
    try:
        deadline = time.monotonic() + 60
        wait_serving(process, port, deadline, "the gateway did not come up")
        assert httpx.get(models, headers=auth).status_code == 401  # no such tenant yet
        asyncio.run(publish(names, signer.sign(7, with_newco(mini))))
        while httpx.get(models, headers=auth).status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail("the bundle adding a tenant was not applied")
            time.sleep(0.1)
        status = asyncio.run(read_status(names, "paris-1"))
        while status is None or status.bundle_version != 7:
            if time.monotonic() > deadline:
                pytest.fail(f"the status bucket does not show bundle v7: {status}")
            time.sleep(0.1)
            status = asyncio.run(read_status(names, "paris-1"))
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "enforcing the policy of the fabric file" in output  # nothing on disk at start
    assert "policy bundle v7" in output and "Traceback" not in output
    assert (tmp_path / "state" / "last-good-bundle.json").exists()


def _status_or_none(names: Names, gateway: str) -> GatewayStatus | None:
    try:  # the bucket exists once the gateway has connected
        return asyncio.run(read_status(names, gateway))
    except Exception:
        return None


def test_require_bundle_needs_a_control_plane(mini_path: Path) -> None:
    code, out = run("--site", "onprem-paris", "-f", str(mini_path), "--require-bundle")
    assert code == 2 and "--nats or --control" in out


@pytest.mark.slow
def test_with_require_bundle_nothing_is_served_before_a_verified_bundle(
    tmp_path: Path, mini_path: Path, mini: Fabric, names: Names
) -> None:
    signer = Signer()
    write_keypair(signer.key, tmp_path / "control.pem", tmp_path / "control.pub")
    process, port = start_gateway(tmp_path, mini_path, names, "paris-strict", "--require-bundle")
    health = f"http://127.0.0.1:{port}/health"
    try:
        deadline = time.monotonic() + 60
        status = _status_or_none(names, "paris-strict")
        while status is None:  # connected to NATS (it reports), yet not serving
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("the gateway never reported to NATS")
            time.sleep(0.2)
            status = _status_or_none(names, "paris-strict")
        assert status.bundle_version is None
        with pytest.raises(httpx.ConnectError):
            httpx.get(health, timeout=1)
        asyncio.run(publish(names, signer.sign(3, with_newco(mini))))
        wait_serving(process, port, deadline, "the gateway did not start serving after the bundle")
        auth = {"authorization": f"Bearer {NEW_KEY}"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=auth).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert "waiting for the control plane before serving" in output
    assert "Traceback" not in output
