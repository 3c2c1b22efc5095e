"""Signed policy bundles: refused when unsigned, tampered, wrongly signed or older; last good kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from isthmus.bundle import (
    BundleRejected,
    BundleStore,
    NoBundle,
    build_bundle,
    canonical_json,
    generate_keypair,
    sign_bundle,
    verify_bundle,
)
from isthmus.cli import bundle_cmd
from isthmus.fabric.catalog import Fabric
from isthmus.guard import GuardPolicy

KEY = generate_keypair()
OTHER = generate_keypair()


def signed(version: int, fabric: Fabric | None = None, **guard: object) -> bytes:
    policy = GuardPolicy.model_validate(guard)
    bundle = build_bundle(version=version, fabric=fabric.spec if fabric else None, guard=policy)
    return sign_bundle(bundle, KEY)


def reject(raw: bytes, current: int | None = None) -> BundleRejected:
    with pytest.raises(BundleRejected) as raised:
        verify_bundle(raw, [KEY.public_key()], current_version=current)
    return raised.value


def test_roundtrip_carries_sovereignty_and_guard(mini: Fabric) -> None:
    bundle = verify_bundle(signed(3, mini, min_score=0.7), [KEY.public_key()])
    assert bundle.version == 3 and bundle.content.guard.min_score == 0.7
    assert [r.name for r in bundle.content.sovereignty.policies] == [
        r.name for r in mini.spec.policies
    ]
    assert bundle.content_matches()


def test_unsigned_refused() -> None:
    document = json.loads(signed(1))
    del document["signature"]
    assert reject(json.dumps(document).encode()).code == "unsigned"


def test_tampered_content_refused() -> None:
    document = json.loads(signed(1))
    document["bundle"]["content"]["guard"]["actions"]["jailbreak"] = "allow"
    error = reject(json.dumps(document).encode())
    assert error.code == "tampered" and "altered" in str(error)


def test_tampered_content_and_hash_refused_by_signature() -> None:
    document = json.loads(signed(1))
    document["bundle"]["content"]["guard"]["actions"]["jailbreak"] = "allow"
    from isthmus.bundle import sha256_hex

    document["bundle"]["content_sha256"] = sha256_hex(document["bundle"]["content"])
    assert reject(json.dumps(document).encode()).code == "bad_signature"


def test_version_is_covered_by_the_signature() -> None:
    document = json.loads(signed(1))
    document["bundle"]["version"] = 99
    assert reject(json.dumps(document).encode()).code == "bad_signature"


def test_wrong_key_refused() -> None:
    raw = sign_bundle(build_bundle(version=1), OTHER)
    error = reject(raw)
    assert error.code == "unknown_key" and "not trusted" in str(error)


def test_older_or_same_version_refused() -> None:
    assert reject(signed(4), current=4).code == "stale"
    assert reject(signed(3), current=4).code == "stale"
    assert verify_bundle(signed(5), [KEY.public_key()], current_version=4).version == 5


def test_garbage_refused() -> None:
    assert reject(b"\xff\x00not json").code == "malformed"
    assert reject(b'{"format": "something else"}').code == "malformed"


def test_store_keeps_last_good_and_refuses_tampered(tmp_path: Path) -> None:
    store = BundleStore(tmp_path, [KEY.public_key()])
    store.accept(signed(1))
    document = json.loads(signed(2))
    document["bundle"]["content"]["guard"]["enabled"] = False
    with pytest.raises(BundleRejected):
        store.accept(json.dumps(document).encode())
    assert store.current is not None and store.current.version == 1
    assert verify_bundle(store.path.read_bytes(), [KEY.public_key()]).version == 1
    with pytest.raises(BundleRejected):
        store.accept(signed(1))  # replay of the same version
    store.accept(signed(2))
    assert store.current.version == 2
    assert [p.name for p in tmp_path.iterdir()] == [store.path.name]  # no temp files left


def test_start_uses_disk_when_control_plane_unreachable(tmp_path: Path) -> None:
    BundleStore(tmp_path, [KEY.public_key()]).accept(signed(7))

    def unreachable() -> bytes:
        raise ConnectionRefusedError("control plane down")

    restarted = BundleStore(tmp_path, [KEY.public_key()])
    assert restarted.start(unreachable).version == 7
    assert restarted.start(lambda: signed(8)).version == 8
    assert restarted.start(lambda: signed(3)).version == 8  # an older one changes nothing
    assert restarted.last_rejection is not None and restarted.last_rejection.code == "stale"


def test_start_refuses_a_bundle_altered_on_disk(tmp_path: Path) -> None:
    store = BundleStore(tmp_path, [KEY.public_key()])
    store.accept(signed(1))
    store.path.write_bytes(store.path.read_bytes().replace(b'"block"', b'"allow"'))
    with pytest.raises(NoBundle) as raised:
        BundleStore(tmp_path, [KEY.public_key()]).start(None)
    assert "tampered" in str(raised.value) or "altered" in str(raised.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(json_values)
def test_canonical_json_is_stable_through_a_round_trip(value: object) -> None:
    assert canonical_json(json.loads(canonical_json(value))) == canonical_json(value)


def test_cli_keygen_sign_verify_show(tmp_path: Path, mini_path: Path) -> None:
    app = typer.Typer()
    policy = typer.Typer()
    bundle_cmd.register(policy)
    app.add_typer(policy, name="policy")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    assert run("policy", "keygen", str(tmp_path))[0] == 0
    key, pub = tmp_path / "policy-signing.key", tmp_path / "policy-signing.pub"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    out = tmp_path / "bundle.json"
    code, _ = run("policy", "sign", "--key", str(key), "--version", "2", "--out", str(out),
                  "--fabric", str(mini_path))  # fmt: skip
    assert code == 0
    code, text = run("policy", "verify", str(out), "--pub", str(pub), "--json")
    assert code == 0 and json.loads(text)["valid"] is True
    code, text = run("policy", "verify", str(out), "--pub", str(pub), "--current-version", "2")
    assert code == 3 and "stale" in text
    out.write_text(out.read_text().replace('"redact"', '"allow"', 1))
    code, text = run("policy", "verify", str(out), "--pub", str(pub), "--json")
    assert code == 3 and json.loads(text)["code"] == "tampered"
    code, text = run("policy", "show", str(out))
    assert code == 0 and "policy bundle v2" in text
    assert run("policy", "keygen", str(tmp_path))[0] == 2  # never overwrites a key
