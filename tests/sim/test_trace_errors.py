"""A malformed trace is refused with its file, line and field, in every format; a good one loads
sorted by arrival from 0. Nothing is silently rounded, clamped or skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from isthmus.cli.main import app
from isthmus.sim.traces import TraceError, load_trace

MOONCAKE_ROW = {"timestamp": 1000, "input_length": 700, "output_length": 9, "hash_ids": [1, 2]}


def mooncake(path: Path, *rows: dict[str, object] | str) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in (MOONCAKE_ROW, *rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def refused(path: Path, *needles: str) -> str:
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({**MOONCAKE_ROW, "input_length": "many"}, "input_length"),
        ({**MOONCAKE_ROW, "output_length": 3.5}, "output_length"),
        ({**MOONCAKE_ROW, "output_length": True}, "output_length"),
        ({**MOONCAKE_ROW, "input_length": -4}, "input_length"),
        ({**MOONCAKE_ROW, "timestamp": "noon"}, "timestamp"),
        ({**MOONCAKE_ROW, "hash_ids": "1 2"}, "hash_ids"),
        ({**MOONCAKE_ROW, "hash_ids": [1, "b"]}, "hash_ids"),
        ({k: v for k, v in MOONCAKE_ROW.items() if k != "output_length"}, "output_length"),
    ],
)
def test_mooncake_bad_field_names_line_and_field(
    tmp_path: Path, row: dict[str, object], field: str
) -> None:
    path = mooncake(tmp_path / "t.jsonl", row)
    refused(path, f"{path}:2", repr(field))


def test_mooncake_bad_json_and_non_object_lines(tmp_path: Path) -> None:
    path = mooncake(tmp_path / "t.jsonl", "{not json")
    refused(path, f"{path}:2", "invalid JSON")
    path = mooncake(tmp_path / "u.jsonl", "[1, 2]")
    refused(path, f"{path}:2", "JSON object")


def test_mooncake_loads_sorted_from_zero(tmp_path: Path) -> None:
    early = {**MOONCAKE_ROW, "timestamp": 400, "input_length": 100}
    path = mooncake(tmp_path / "t.jsonl", early, "")
    requests = load_trace(path, rate_scale=2.0)
    assert [r.prompt_tokens for r in requests] == [100, 700]
    assert [r.arrival_s for r in requests] == [0.0, 0.3]  # (1000 - 400) ms at twice the rate
    assert requests[1].hash_ids == (1, 2)


def test_invalid_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(MOONCAKE_ROW).encode() + b'\n{"timestamp": "\xff"}\n')
    refused(path, f"{path}:2", "UTF-8")
    generic = tmp_path / "g.csv"
    generic.write_bytes(b"arrival_s,prompt_tokens,output_tokens\n0,5,1\n1,\xfe5,1\n")
    refused(generic, f"{generic}:3", "UTF-8")
    azure = tmp_path / "a.csv"
    azure.write_bytes(b"TIMESTAMP,ContextTokens,GeneratedTokens\n\xff\n")
    refused(azure, f"{azure}:2", "UTF-8")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ('"arrival_s": NaN', "arrival_s"),
        ('"arrival_s": Infinity', "arrival_s"),
        ('"arrival_s": 1, "prompt_tokens": 2.5', "prompt_tokens"),
        ('"arrival_s": 1, "hash_ids": "abc"', "hash_ids"),
        ('"arrival_s": 1, "hash_ids": [1.5]', "hash_ids"),
        ('"arrival_s": 1, "model": 7', "model"),
    ],
)
def test_generic_jsonl_bad_values(tmp_path: Path, value: str, field: str) -> None:
    path = tmp_path / "t.jsonl"
    row = '{"prompt_tokens": 5, "output_tokens": 1, ' + value + "}"
    # a later key wins in JSON objects: the bad value replaces the good default
    path.write_text('{"arrival_s": 0, "prompt_tokens": 5, "output_tokens": 1}\n' + row + "\n")
    refused(path, f"{path}:2", repr(field))


def test_generic_csv_bad_hash_ids(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens,hash_ids\n0,5,1,1 2\n1,5,1,1 x\n")
    refused(path, f"{path}:3", "'hash_ids'")


def test_sim_cli_reports_a_bad_trace_without_a_traceback(tmp_path: Path) -> None:
    path = mooncake(tmp_path / "t.jsonl", {**MOONCAKE_ROW, "input_length": "x"})
    result = CliRunner().invoke(app, ["sim", "--trace", str(path), "-n", "5"])
    assert result.exit_code == 2, result.output
    assert f"{path}:2" in result.stderr and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        (({**MOONCAKE_ROW, "hash_ids": [1, None]},), ":2: field 'hash_ids'"),
        (({**MOONCAKE_ROW, "input_length": 5000},), "request 2: input_length 5000 needs"),
        (("{",), ":2: invalid JSON"),
    ],
)
def test_demo_traffic_refuses_a_bad_trace_before_sending(
    tmp_path: Path, rows: tuple[dict[str, object] | str, ...], needle: str
) -> None:
    path = mooncake(tmp_path / "t.jsonl", *rows)
    # the gateway URL answers nothing: the trace is read and refused before any request
    args = ["demo", "traffic", "--trace", str(path), "--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and "Traceback" not in result.output


def test_demo_traffic_bad_speedup_and_missing_trace(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "traffic", "--speedup", "0"])
    assert result.exit_code == 2 and "--speedup" in result.stderr
    missing = tmp_path / "none.jsonl"
    result = CliRunner().invoke(app, ["demo", "traffic", "--trace", str(missing)])
    assert result.exit_code == 2 and "cannot read trace" in result.stderr
