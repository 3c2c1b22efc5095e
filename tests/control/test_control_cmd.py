"""``isthmus control``: configuration mistakes are one line and a non-zero exit, no trace."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from isthmus.cli.main import app


def test_bad_signing_key_and_bad_database_are_reported(tmp_path: Path) -> None:
    runner = CliRunner()
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    result = runner.invoke(app, ["control", "--signing-key", str(not_a_key)])
    assert result.exit_code == 2 and "not an Ed25519 private key" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        app,
        ["control", "--signing-key", str(tmp_path / "new.pem"), "--db",
         f"sqlite:///{tmp_path}/missing/dir/x.db"],
    )  # fmt: skip
    assert result.exit_code == 2 and "does not exist" in result.output
    assert "Created signing key" in result.output and (tmp_path / "new.pem.pub").exists()
    result = runner.invoke(app, ["control", "--namespace", "bad.name"])
    assert result.exit_code == 2 and "--namespace" in result.output
