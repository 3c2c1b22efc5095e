"""`isthmus sim` refuses bad options and traces with a message naming the option or the file's
line and field (exit code 2, no traceback), and its infinite-cache bound really bounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from isthmus.cli.main import app
from isthmus.sim.replay import TraceRequest
from isthmus.sim.report import infinite_cache_bound
from isthmus.sim.traces import TraceError, load_trace

runner = CliRunner()


def write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def small_trace(path: Path, n: int = 10) -> Path:
    rows = [
        {"arrival_s": k * 0.2, "prompt_tokens": 600, "output_tokens": 8, "hash_ids": [1, 100 + k]}
        for k in range(n)
    ]
    return write_rows(path, rows)


def sim(fabric: Path, trace: Path, *extra: str) -> list[str]:
    return ["sim", "-f", str(fabric), "--trace", str(trace), "--gateway", "onprem-paris",
            "--model", "llama-3.1-8b", *extra]  # fmt: skip


def refused(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr


# -- 1. a prompt of 0 tokens ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("g.jsonl", '{"arrival_s": 0, "prompt_tokens": 0, "output_tokens": 3}\n', "'prompt_tokens'"),
        ("g.csv", "arrival_s,prompt_tokens,output_tokens\n0,0,3\n", "'prompt_tokens'"),
        ("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,0,3\n",
         "'ContextTokens'"),
        ("m.jsonl",
         '{"timestamp": 0, "input_length": 0, "output_length": 3, "hash_ids": []}\n',
         "'input_length'"),
    ],
)  # fmt: skip
def test_a_prompt_of_no_tokens_is_refused_with_its_line(
    tmp_path: Path, mini_path: Path, name: str, text: str, needle: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    line = 2 if name.endswith(".csv") else 1
    assert f"{path}:{line}" in str(caught.value) and needle in str(caught.value)
    assert "at least 1" in str(caught.value)
    refused(sim(mini_path, path), f"{path}:{line}", needle)


# -- 2. NaN, infinities and negative times ----------------------------------------------------


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf", "0", "-2"])
def test_rate_scale_must_be_finite_and_positive(
    tmp_path: Path, mini_path: Path, scale: str
) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    refused(sim(mini_path, trace, "--rate-scale", scale), "--rate-scale")


@pytest.mark.parametrize(
    ("option", "spec", "needle"),
    [
        ("--outage", "onprem-paris@nan", "start"),
        ("--outage", "onprem-paris@inf", "start"),
        ("--outage", "onprem-paris@-10", "start"),
        ("--outage", "onprem-paris@10+nan", "duration"),
        ("--outage", "onprem-paris@10+inf", "duration"),
        ("--outage", "onprem-paris@10+-5", "duration"),
        ("--outage", "onprem-paris@10+0", "duration"),
        ("--outage", "onprem-paris@10+", "NAME@SECONDS"),
        ("--cutoff", "x@nan", "start"),
        ("--cutoff", "x@1+-1", "duration"),
    ],
)
def test_fault_times_must_be_finite_and_in_range(
    tmp_path: Path, mini_path: Path, option: str, spec: str, needle: str
) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    refused(sim(mini_path, trace, option, spec), option, needle)


def test_an_outage_without_duration_lasts_to_the_end(tmp_path: Path, mini_path: Path) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    result = runner.invoke(app, sim(mini_path, trace, "--outage", "onprem-paris@0", "--json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["requests"] == 10


# -- 3. paths ---------------------------------------------------------------------------------


def test_a_directory_as_trace_is_refused(tmp_path: Path, mini_path: Path) -> None:
    with pytest.raises(TraceError, match="is a directory"):
        load_trace(tmp_path)
    refused(sim(mini_path, tmp_path), str(tmp_path), "is a directory")


def test_an_unreadable_trace_is_refused(tmp_path: Path, mini_path: Path) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    trace.chmod(0)
    try:
        trace.open("rb").close()
    except PermissionError:
        pass
    else:  # root reads anything: nothing to test
        trace.chmod(0o644)
        pytest.skip("running as a user who can read a mode-0 file")
    try:
        refused(sim(mini_path, trace), str(trace), "cannot read")
    finally:
        trace.chmod(0o644)


@pytest.mark.parametrize("subcommand", [(), ("compare",)])
def test_a_bad_plots_folder_is_refused_before_simulating(
    tmp_path: Path, mini_path: Path, subcommand: tuple[str, ...]
) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    afile = tmp_path / "afile"
    afile.write_text("")
    refused(sim(mini_path, trace, "--plots", str(afile), *subcommand), "--plots", "exists")
    nested = afile / "below"
    refused(sim(mini_path, trace, "--plots", str(nested), *subcommand), "--plots")
    refused(sim(mini_path, trace, "--plots", "/proc/nope", *subcommand), "--plots")


def test_plots_folder_is_created(tmp_path: Path, mini_path: Path) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    plots = tmp_path / "a" / "b"
    result = runner.invoke(app, sim(mini_path, trace, "--plots", str(plots), "--json"))
    assert result.exit_code == 0, result.output
    assert (plots / "ttft_cdf_isthmus.png").stat().st_size > 1000


# -- 4. the infinite-cache bound --------------------------------------------------------------


def test_bound_counts_a_prompt_longer_than_its_ids() -> None:
    # as the replay does, blocks past the ids repeat the last one: all 4000 tokens are shared
    requests = [TraceRequest(k * 1.0, 4000, 4, hash_ids=(7,)) for k in range(2)]
    assert infinite_cache_bound(requests) == 0.5


def test_bound_counts_a_partial_block_only_as_far_as_an_earlier_prompt_reached() -> None:
    first = TraceRequest(0.0, 600, 4, hash_ids=(1, 2))
    second = TraceRequest(1.0, 1000, 4, hash_ids=(1, 2))
    assert infinite_cache_bound([first, second]) == 600 / 1600
    assert infinite_cache_bound([second, first]) == 600 / 1600
    assert infinite_cache_bound([first, TraceRequest(1.0, 1000, 4)]) == 0.0


def test_hit_rate_never_exceeds_the_bound(tmp_path: Path, mini_path: Path) -> None:
    rows = [
        {"arrival_s": k * 0.5, "prompt_tokens": 4000, "output_tokens": 4, "hash_ids": [7]}
        for k in range(12)
    ]
    trace = write_rows(tmp_path / "t.jsonl", rows)
    result = runner.invoke(app, sim(mini_path, trace, "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["hit_rate"] > 0
    assert summary["hit_rate"] <= summary["infinite_cache_bound"]
    assert summary["hit_rate_of_bound"] <= 1.0


# -- 5. request and output counts -------------------------------------------------------------


@pytest.mark.parametrize("n", ["0", "-5"])
def test_requests_must_be_at_least_one(tmp_path: Path, mini_path: Path, n: str) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    stderr = refused(sim(mini_path, trace, "-n", n), "--requests")
    assert "no requests" not in stderr


@pytest.mark.parametrize("subcommand", [(), ("compare",)])
@pytest.mark.parametrize("cap", ["0", "-3"])
def test_max_output_tokens_must_be_at_least_one(
    tmp_path: Path, mini_path: Path, cap: str, subcommand: tuple[str, ...]
) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    refused(sim(mini_path, trace, "--max-output-tokens", cap, *subcommand), "--max-output-tokens")


# -- 6. generic traces start at 0 -------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_generic_trace_is_rebased_before_rate_scaling(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"g{suffix}"
    if suffix == ".csv":
        path.write_text("arrival_s,prompt_tokens,output_tokens\n5.5,9,1\n3.5,8,1\n")
    else:
        write_rows(path, [{"arrival_s": 5.5, "prompt_tokens": 9, "output_tokens": 1},
                          {"arrival_s": 3.5, "prompt_tokens": 8, "output_tokens": 1}])  # fmt: skip
    requests = load_trace(path, rate_scale=2.0)
    assert [(r.arrival_s, r.prompt_tokens) for r in requests] == [(0.0, 8), (1.0, 9)]


def test_one_late_request_simulates_from_zero(tmp_path: Path, mini_path: Path) -> None:
    trace = write_rows(
        tmp_path / "t.jsonl", [{"arrival_s": 3.5, "prompt_tokens": 600, "output_tokens": 8}]
    )
    result = runner.invoke(app, sim(mini_path, trace, "--json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["simulated_s"] < 3.5
