"""Bad input gets a precise 4xx with the error body: never a 5xx, never a stack trace."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from isthmus.control import ControlPlane, create_app
from isthmus.control.wire import WireError, audit_row
from tests.control.conftest import ADMIN, bearer, make_plane


def _error(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in answer.text
    error: dict[str, Any] = body["error"]
    return error


def test_malformed_yaml_fabric_names_file_line_and_column(seeded: TestClient) -> None:
    answer = seeded.put(
        "/v1/fabric",
        headers=bearer(ADMIN),
        json={"yaml": "name: broken\nsites: [\n  - oops", "file": "site-a.yaml"},
    )
    error = _error(answer, 422, "invalid_fabric")
    problems = error["problems"]
    assert isinstance(problems, list) and problems
    assert problems[0]["file"] == "site-a.yaml" and problems[0]["line"] >= 2


def test_invalid_fabric_lists_every_problem_with_its_field(seeded: TestClient) -> None:
    text = "name: x\nsites:\n  - name: a\n    kind: castle\n"
    error = _error(seeded.put("/v1/fabric", headers=bearer(ADMIN), json={"yaml": text}),
                   422, "invalid_fabric")  # fmt: skip
    fields = {p["field"] for p in error["problems"]}
    assert "sites[0].kind" in fields and "sites[0].provider" in fields
    kind = next(p for p in error["problems"] if p["field"] == "sites[0].kind")
    assert (kind["line"], kind["column"]) == (4, 11)
    # the fabric in force did not change
    assert seeded.get("/v1/fabric", headers=bearer(ADMIN)).json()["revision"] == 1


def test_fabric_text_cannot_include_server_files(seeded: TestClient) -> None:
    text = "name: x\ninclude: [/etc/passwd]\n"
    error = _error(seeded.put("/v1/fabric", headers=bearer(ADMIN), json={"yaml": text}),
                   422, "invalid_fabric")  # fmt: skip
    assert "include" in str(error["message"])


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/fabric", {"yaml": "name: x", "colour": "red"}, "colour"),
        ("/v1/fabric", {"yaml": 42}, "yaml"),
        ("/v1/fabric", {}, "yaml"),
        ("/v1/policy/routing", {"settings": [1, 2]}, "settings"),
        ("/v1/policy/guard", {"default_action": "explode"}, "default_action"),
        ("/v1/policy/guard", {"inspectors": ["no-such-inspector"]}, "inspectors"),
    ],
)
def test_unknown_fields_and_wrong_types_are_422_naming_the_field(
    seeded: TestClient, path: str, body: object, field: str
) -> None:
    error = _error(seeded.put(path, headers=bearer(ADMIN), json=body), 422, "invalid_request")
    assert field in {p["field"] for p in error["problems"]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/plans", {"workloads_yaml": "x", "time_limit_s": 10_000}),
        ("POST", "/v1/plans", {"workloads_yaml": "x", "method": "guess"}),
        ("POST", "/v1/tenants/bank/keys", {"id": "has space"}),
        ("GET", "/v1/audit?limit=0", None),
        ("GET", "/v1/audit?since=yesterday", None),
        ("GET", "/v1/audit?after=-1", None),
        ("GET", "/v1/bundles/0", None),
        ("GET", "/v1/bundles/abc", None),
    ],
)
def test_out_of_range_values_are_422(
    seeded: TestClient, method: str, path: str, body: object
) -> None:
    _error(seeded.request(method, path, headers=bearer(ADMIN), json=body), 422, "invalid_request")


def test_invalid_workloads_are_located(seeded: TestClient) -> None:
    body = {"workloads_yaml": "workloads:\n  - name: w\n    kind: nonsense\n", "file": "w.yaml"}
    error = _error(seeded.post("/v1/plans", headers=bearer(ADMIN), json=body),
                   422, "invalid_workloads")  # fmt: skip
    assert any(p["file"] == "w.yaml" for p in error["problems"])


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"'])
def test_bodies_that_are_not_a_json_object_are_400(seeded: TestClient, content: bytes) -> None:
    headers = bearer(ADMIN) | {"Content-Type": "application/json"}
    _error(seeded.put("/v1/fabric", headers=headers, content=content), 400, "invalid_json")


def test_oversized_body_is_413_before_parsing(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    plane: ControlPlane = make_plane(tmp_path, max_body_bytes=1000)
    try:
        with TestClient(create_app(plane)) as client:
            big = {"yaml": "x" * 2000}
            _error(client.put("/v1/fabric", headers=bearer(ADMIN), json=big), 413,
                   "body_too_large")  # fmt: skip

            def chunks():  # type: ignore[no-untyped-def]
                for _ in range(5):
                    yield b"x" * 500

            streamed = client.put("/v1/fabric", headers=bearer(ADMIN), content=chunks())
            _error(streamed, 413, "body_too_large")
    finally:
        plane.close()


def test_unknown_path_and_method(seeded: TestClient) -> None:
    _error(seeded.get("/v1/nothing", headers=bearer(ADMIN)), 404, "unknown_path")
    _error(seeded.patch("/v1/fabric", headers=bearer(ADMIN)), 405, "method_not_allowed")


def test_missing_things_are_404(client: TestClient, seeded: TestClient) -> None:
    _error(seeded.get("/v1/bundles/99", headers=bearer(ADMIN)), 404, "unknown_bundle")
    _error(seeded.get("/v1/plans/99", headers=bearer(ADMIN)), 404, "unknown_plan")
    _error(seeded.delete("/v1/tenants/bank/keys/nope", headers=bearer(ADMIN)), 404, "unknown_key")


def test_no_fabric_yet(client: TestClient) -> None:
    _error(client.get("/v1/fabric", headers=bearer(ADMIN)), 404, "no_fabric")
    _error(client.post("/v1/bundles", headers=bearer(ADMIN)), 404, "no_fabric")
    assert client.get("/v1/tenants", headers=bearer(ADMIN)).json() == {"tenants": []}


def test_database_down_is_503_not_a_trace(seeded: TestClient, plane: ControlPlane) -> None:
    plane.store.engine.dispose()
    from pathlib import Path

    Path(str(plane.store.engine.url.database)).unlink()
    Path(str(plane.store.engine.url.database)).mkdir()  # now it cannot be opened as a database
    _error(seeded.get("/v1/bundles", headers=bearer(ADMIN)), 503, "database_unavailable")


def test_misspelt_query_parameter_is_422_not_an_unfiltered_answer(seeded: TestClient) -> None:
    error = _error(seeded.get("/v1/audit?tennant=bank", headers=bearer(ADMIN)), 422,
                   "unknown_query_parameter")  # fmt: skip
    assert error["param"] == "tennant" and "tenant" in error["message"]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_times_out_of_range_in_utc_are_422_not_500(seeded: TestClient, moment: str) -> None:
    answer = seeded.get("/v1/audit", params={"since": moment}, headers=bearer(ADMIN))
    assert answer.status_code == 422, answer.text
    assert "out of range" in answer.text


def test_an_audit_record_with_a_time_out_of_range_is_a_wire_error() -> None:
    payload = (
        b'{"seq": 1, "at": "0001-01-01T00:00:00+05:00", "tenant": "bank", "direction": "input",'
        b' "category": "pii", "action": "redact", "rule": "r", "location": "l", "score": 0.9,'
        b' "content_hash": "h", "prev_hash": "p", "record_hash": "x"}'
    )
    with pytest.raises(WireError, match="out of range"):
        audit_row("isthmus.audit.gw-1", payload)
