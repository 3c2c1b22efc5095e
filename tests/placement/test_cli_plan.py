"""``isthmus plan``, driven in-process through its own Typer app (main.py wires it)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from isthmus.cli.plan_cmd import register

from .conftest import EXAMPLES

app = typer.Typer()
register(app)


@app.command("version")
def _version() -> None:  # a second command keeps Typer from flattening "plan"
    pass


runner = CliRunner()
FABRIC = str(EXAMPLES / "fabric.yaml")
WORKLOADS = str(EXAMPLES / "workloads.yaml")


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["plan", *args, "--fabric", FABRIC], env={"COLUMNS": "220"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_plan_table() -> None:
    code, out, _ = run(WORKLOADS)
    assert code == 0
    assert "Isthmus plan" in out and "optimal" in out
    for name in ("meridian-shop-assistant", "lakeshore-notes-summaries", "bund-case-assistant"):
        assert name in out
    assert "Plan: 13 to place, 0 unplaceable." in out


def test_plan_json() -> None:
    code, out, _ = run(WORKLOADS, "--json", "--baseline")
    assert code == 0
    data = json.loads(out)
    assert data["status"] == "optimal"
    assert len(data["placements"]) == 13
    leg = data["placements"][0]["legs"][0]
    assert {"site", "accelerator", "tier", "replicas", "cost", "ttft_p95_ms"} <= set(leg)
    assert data["baseline"]["rows"][1]["name"] == "skypilot-style"


def test_explain() -> None:
    code, out, _ = run(WORKLOADS, "--explain", "lakeshore-radiology-lora")
    assert code == 0
    assert "binding constraints" in out and "best rejected alternatives" in out
    assert "move the model or move the data" in out


def test_infeasible_are_explained_not_crashed() -> None:
    code, out, _ = run(str(EXAMPLES / "workloads-infeasible.yaml"))
    assert code == 0
    assert "7 unplaceable" in out
    assert "rule gdpr-personal-data" in out and "nearest compliant site" in out


def test_replan_after_failure() -> None:
    code, out, _ = run(WORKLOADS, "--fail", "vast-us-tx")
    assert code == 0
    assert "Re-plan after vast-us-tx down" in out
    assert "site vast-us-tx is down" in out


def test_errors_are_for_people(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("workloads:\n  - name: x\n    kind: online\n    model: m\n")
    code, _, err = run(str(bad))
    assert code == 1
    assert f"{bad}:3:11: workloads[0].kind" in err and "Traceback" not in err
    code, _, err = run(WORKLOADS, "--explain", "nope")
    assert code == 2 and "no workload 'nope'" in err
    code, _, err = run(WORKLOADS, "--fail", "atlantis")
    assert code == 2 and "unknown site 'atlantis'" in err
    code, _, err = run(WORKLOADS, "--price", "vast-us-tx=3")
    assert code == 2 and "--price wants SITE/ACCELERATOR=USD" in err
    code, _, err = run(str(tmp_path / "absent.yaml"))
    assert code == 2 and "no such file" in err
