"""`isthmus sim` on the mini fabric: one policy, all policies, bad options, a generic trace."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from isthmus.cli.main import app
from isthmus.sim.traces import TraceError, load_trace

runner = CliRunner()


def write_trace(path: Path, n: int = 40) -> Path:
    rows = [
        {"arrival_s": k * 0.2, "prompt_tokens": 600, "output_tokens": 8, "hash_ids": [1, 100 + k]}
        for k in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def sim_args(fabric: Path, trace: Path, *extra: str, gateway: str = "onprem-paris") -> list[str]:
    """``isthmus sim`` on ``fabric`` and ``trace`` from ``gateway`` for llama-3.1-8b."""
    return ["sim", "-f", str(fabric), "--trace", str(trace), "--gateway", gateway,
            "--model", "llama-3.1-8b", *extra]  # fmt: skip


def test_sim_one_policy_json(tmp_path: Path, mini_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl")
    result = runner.invoke(
        app,
        sim_args(mini_path, trace, "-c", "public", "--json"),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] == 40 and summary["success_rate"] == 1.0
    assert summary["sovereignty_violations"] == 0


def test_sim_compare_counts_naive_violations(tmp_path: Path, mini_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", 30)
    result = runner.invoke(
        app,
        sim_args(
            mini_path, trace, "-c", "pii", "--json", "--plots", str(tmp_path / "plots"), "compare"
        ),
    )
    assert result.exit_code == 0, result.output
    by = {s["policy"]: s for s in json.loads(result.stdout)}
    assert by["isthmus"]["sovereignty_violations"] == 0
    assert by["round_robin"]["sovereignty_violations"] > 0
    assert (tmp_path / "plots" / "ttft_cdf.png").stat().st_size > 1000


def test_sim_bad_options_are_clear(tmp_path: Path, mini_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl")
    result = runner.invoke(
        app,
        sim_args(mini_path, trace, gateway="atlantis"),
    )
    assert result.exit_code == 2 and "--gateway" in result.stderr
    result = runner.invoke(
        app,
        sim_args(mini_path, trace, "--outage", "onprem-paris@soon"),
    )
    assert result.exit_code == 2 and "NAME@SECONDS" in result.stderr


def test_malformed_generic_trace_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 1}\n{"arrival_s": 1, "prompt_tokens": "many", "output_tokens": 1}\n'
    )
    try:
        load_trace(bad)
    except TraceError as exc:
        assert f"{bad}:2" in str(exc) and "prompt_tokens" in str(exc)
    else:
        raise AssertionError("expected a TraceError")


def test_azure_trace_loads_with_synthetic_sharing() -> None:
    trace = (
        Path(__file__).resolve().parents[2]
        / "data"
        / "traces"
        / "azure_llm_inference_2023_code.csv"
    )
    requests = load_trace(trace, 50, shared_prefix_tokens=1024)
    assert len(requests) == 50 and requests[0].arrival_s == 0.0
    assert all(r.hash_ids[:2] == (-1, -2) for r in requests if r.prompt_tokens > 1024)
