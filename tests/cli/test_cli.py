"""The command line, driven in-process: output for people, JSON for scripts, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from isthmus.cli.main import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_validate_ok(mini_path: Path) -> None:
    code, out, _ = run("validate", str(mini_path))
    assert code == 0
    assert "valid — 3 sites" in out


def test_validate_reports_every_problem_with_location(tmp_path: Path, mini_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        mini_path.read_text()
        .replace("kind: on_prem", "kind: onprem")
        .replace("country: FR", "country: FRA")
    )
    code, _, err = run("validate", str(broken))
    assert code == 1
    assert "2 problems found" in err
    assert f"{broken}:" in err and "sites[1].kind" in err and "sites[1].country" in err
    assert "Traceback" not in err


def test_validate_json(tmp_path: Path, mini_path: Path) -> None:
    code, out, _ = run("validate", "--json", str(mini_path), str(tmp_path / "absent.yaml"))
    assert code == 1
    results = json.loads(out)
    assert results[0]["valid"] is True
    assert results[1]["valid"] is False


def test_validate_flags_dataset_stored_against_policy(tmp_path: Path, mini_path: Path) -> None:
    bad = tmp_path / "bad-dataset.yaml"
    bad.write_text(
        mini_path.read_text().replace(
            "{name: customers, site: onprem-paris", "{name: customers, site: aws-us-east-1"
        )
    )
    code, _, err = run("validate", str(bad))
    assert code == 1
    assert "datasets[0].site" in err and "gdpr-pii" in err


def test_fabric_summary_json(mini_path: Path) -> None:
    code, out, _ = run("fabric", "-f", str(mini_path), "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["sites"] == 3
    assert summary["accelerators"]["H100"] == {"count": 88, "free": 84}


def test_show_site_and_unknown_name(mini_path: Path) -> None:
    code, out, _ = run("show", "site", "onprem-paris", "-f", str(mini_path))
    assert code == 0 and "par-llama" in out
    code, _, err = run("show", "site", "onprem-pari", "-f", str(mini_path))
    assert code == 2 and "did you mean onprem-paris" in err


def test_find_ranks_and_filters(mini_path: Path) -> None:
    code, out, _ = run(
        "find",
        "-a",
        "H100",
        "-n",
        "8",
        "-j",
        "EEA",
        "--near",
        "FRA",
        "--within-ms",
        "15",
        "--private",
        "-c",
        "pii",
        "-f",
        str(mini_path),
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert [c["site"] for c in result["candidates"]] == ["onprem-paris"]
    reasons = {e["site"]: e["condition"] for e in result["excluded"]}
    assert reasons["aws-us-east-1"] == "jurisdiction"
    # Frankfurt's only private path runs through Paris (19.7 ms > 15 ms)
    assert reasons["aws-eu-central-1"] == "latency"


def test_find_refuses_bad_options(mini_path: Path) -> None:
    code, _, err = run("find", "--within-ms", "10", "-f", str(mini_path))
    assert code == 2 and "--within-ms needs --near" in err
    code, _, err = run("find", "-c", "secret", "-f", str(mini_path))
    assert code == 2 and "unknown data class 'secret'" in err


def test_policy_check_explains_a_refusal(mini_path: Path) -> None:
    code, out, _ = run("policy", "check", "pii", "--site", "aws-us-east-1", "-f", str(mini_path))
    assert code == 3
    assert "refused by gdpr-pii (process_in)" in out
    code, out, _ = run(
        "policy",
        "check",
        "phi",
        "--site",
        "aws-us-east-1",
        "--from",
        "IAD",
        "-f",
        str(mini_path),
        "--json",
    )
    verdict = json.loads(out)
    assert code == 3 and verdict["clause"] == "require_private_path"


def test_policy_check_all_sites(mini_path: Path) -> None:
    code, out, _ = run("policy", "check", "pii", "-f", str(mini_path), "--json")
    assert code == 0
    rows = {r["site"]: r["allowed"] for r in json.loads(out)}
    assert rows == {"aws-eu-central-1": False, "onprem-paris": True, "aws-us-east-1": False}
