"""``isthmus catalog import|export|list``, driven in-process with Typer's runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from isthmus.cli.catalog_cmd import catalog_app
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric_text

app = typer.Typer()
app.add_typer(catalog_app, name="catalog")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(app, ["catalog", *args], env={"COLUMNS": "200", **(env or {})})
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def fabric_file(tmp_path: Path, small_fabric_text: str) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(small_fabric_text, encoding="utf-8")
    return path


def test_import_then_import_again(sqlite_url: str, fabric_file: Path) -> None:
    first = run("import", str(fabric_file), "--db", sqlite_url)
    again = run("import", str(fabric_file), "--db", sqlite_url)
    renamed = run("import", str(fabric_file), "--db", sqlite_url, "--name", "prod")
    assert first.exit_code == 0, first.stderr
    assert "as catalog store-test revision 1: 4 sites, 3 links, 4 models" in first.stdout
    assert again.exit_code == 0
    assert "catalog store-test revision 1 unchanged" in again.stdout
    assert "catalog prod revision 1" in renamed.stdout


def test_export_to_stdout_and_to_a_file(
    sqlite_url: str, fabric_file: Path, tmp_path: Path, small_fabric: Fabric
) -> None:
    run("import", str(fabric_file), "--db", sqlite_url)
    printed = run("export", "--db", sqlite_url)
    assert printed.exit_code == 0
    assert printed.stdout.startswith("# Catalog 'store-test', revision 1, imported ")
    assert load_fabric_text(printed.stdout).spec == small_fabric.spec
    target = tmp_path / "out.yaml"
    written = run(
        "export", "--db", sqlite_url, "--name", "store-test", "-r", "1", "-o", str(target)
    )
    assert written.exit_code == 0
    assert f"wrote {target}" in written.stdout
    assert target.read_text(encoding="utf-8") == printed.stdout


def test_list_shows_every_revision(
    sqlite_url: str, fabric_file: Path, small_fabric_text: str
) -> None:
    assert "no catalogs in" in run("list", "--db", sqlite_url).stdout
    run("import", str(fabric_file), "--db", sqlite_url)
    edited = small_fabric_text.replace("leased line", "leased line, 100G")
    fabric_file.write_text(edited, encoding="utf-8")
    run("import", str(fabric_file), "--db", sqlite_url)
    listed = run("list", "--db", sqlite_url)
    assert listed.exit_code == 0
    rows = [line for line in listed.stdout.splitlines() if line.strip().startswith("store-test")]
    assert len(rows) == 2
    assert rows[0].split()[:2] == ["store-test", "1"]
    assert rows[1].split()[:3] == ["store-test", "*", "2"]
    assert str(fabric_file) in rows[1]


def test_invalid_fabric_prints_every_problem(sqlite_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sites:\n"
        "  - {name: a, kind: moon, provider: p, city: c, country: DE, lat_deg: 1, lon_deg: 2}\n"
        "endpoints:\n"
        "  - {name: e, model: nope, site: a, engine: vllm, url: 'http://x'}\n",
        encoding="utf-8",
    )
    result = run("import", str(bad), "--db", sqlite_url)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "error: 2 problems found" in result.stderr
    assert f"{bad}:2:" in result.stderr and "sites[0].kind" in result.stderr
    assert f"{bad}:4:" in result.stderr and "unknown model 'nope'" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("list", "--db", "nonsense"), "error: 'nonsense' is not a database URL"),
        (("export", "--db", "postgresql://u:pw@127.0.0.1:1/x"), "cannot connect to"),
        (("export", "--db", "{db}"), "holds no catalog yet; import one first"),
        (("export", "--db", "{db}", "-o", "{tmp}/missing/out.yaml"), "holds no catalog"),
        (("import", "{tmp}/absent.yaml", "--db", "{db}"), "cannot read file"),
    ],
)
def test_failures_are_one_red_line_and_exit_2(
    sqlite_url: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    filled = [a.format(db=sqlite_url, tmp=tmp_path) for a in args]
    result = run(*filled, env={"FORCE_COLOR": "1", "TERM": "xterm"})
    assert result.exit_code == 2
    assert message in result.stderr
    assert "\x1b[31m" in result.stderr  # red
    assert "pw@" not in result.stderr


def test_export_to_an_unwritable_path(sqlite_url: str, fabric_file: Path, tmp_path: Path) -> None:
    run("import", str(fabric_file), "--db", sqlite_url)
    result = run("export", "--db", sqlite_url, "-o", str(tmp_path / "missing" / "out.yaml"))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "No such file or directory" in result.stderr


def test_unknown_revision_is_refused_with_the_range(sqlite_url: str, fabric_file: Path) -> None:
    run("import", str(fabric_file), "--db", sqlite_url)
    result = run("export", "--db", sqlite_url, "--revision", "9")
    assert result.exit_code == 2
    assert "has no revision 9; its revisions are 1 to 1" in result.stderr
