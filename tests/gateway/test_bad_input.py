"""Bad input gets the right 4xx and an OpenAI-style body, never a trace; driven in-process (ASGI)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.gateway import Gateway, GatewayConfig
from isthmus.gateway.errors import ApiError

from .conftest import KEY, OTHER_KEY, with_tenants

GOOD = {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(mini: Fabric) -> Gateway:
    config = GatewayConfig(site="onprem-paris", health_interval_s=0, log_decisions=False)
    return Gateway(with_tenants(mini), config)


def post(
    gateway: Gateway,
    content: bytes | None = None,
    *,
    json: Any = None,
    key: str | None = KEY,
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            h = dict(headers or {})
            if key is not None:
                h["authorization"] = f"Bearer {key}"
            return await client.request(method, path, content=content, json=json, headers=h)

    return asyncio.run(go())


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("content", "status", "code", "fragment"),
    [
        (b'{"model": "llama-3.1-8b", "messages": [', 400, "invalid_json", "not valid JSON"),
        (b'["a list"]', 400, "invalid_type", "must be a JSON object"),
        (
            b'{"model": "llama-3.1-8b", "messages": "hi"}',
            400,
            "invalid_type",
            "'messages' must be an array",
        ),
        (b'{"model": 42, "messages": []}', 400, "invalid_type", "'model' is required"),
        (
            b'{"messages": [{"role": "user", "content": "x"}]}',
            400,
            "missing_model",
            "'model' is required",
        ),
        (
            b'{"model": "llama-3.1-8b", "messages": [{"role": "wizard", "content": "x"}]}',
            400,
            "invalid_value",
            "messages[0].role",
        ),
        (
            b'{"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}',
            400,
            "invalid_type",
            "'max_tokens' must be an integer",
        ),
        (
            b'{"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "x"}], "temperature": 7}',
            400,
            "invalid_value",
            "'temperature' must be between 0 and 2",
        ),
        (
            b'{"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "caf\xe9"}]}',
            400,
            "invalid_json",
            "UTF-8",
        ),
    ],
    ids=[
        "truncated",
        "not-object",
        "messages-string",
        "model-int",
        "no-model",
        "bad-role",
        "max-tokens-str",
        "temperature",
        "invalid-utf8",
    ],
)
def test_malformed_bodies(
    gateway: Gateway, content: bytes, status: int, code: str, fragment: str
) -> None:
    response = post(gateway, content, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert fragment in error["message"]
    assert error["type"] == "invalid_request_error"


def test_ten_megabyte_body_is_refused_with_413(gateway: Gateway) -> None:
    big = (
        b'{"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "'
        + b"x" * (10 * 1024 * 1024)
        + b'"}]}'
    )
    response = post(gateway, big, key=OTHER_KEY)  # this tenant's limit: 64 KiB
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    response = post(gateway, big)  # the bank's limit: the default 1 MiB
    assert response.status_code == 413


def test_unknown_model_is_404(gateway: Gateway) -> None:
    response = post(gateway, json={**GOOD, "model": "gpt-17"})
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found" and error["param"] == "model"


def test_model_not_allowed_for_tenant_is_403(gateway: Gateway) -> None:
    response = post(gateway, json=GOOD, key=OTHER_KEY)  # the lab may use chat-small only
    assert response.status_code == 403
    assert error_of(response)["code"] == "model_not_allowed"


@pytest.mark.parametrize(
    ("key", "headers", "code"),
    [
        (None, None, "missing_api_key"),
        ("sk-wrong", None, "invalid_api_key"),
        (None, {"authorization": "Basic abc"}, "invalid_authorization_header"),
    ],
)
def test_missing_or_wrong_key_is_401(
    gateway: Gateway, key: str | None, headers: dict[str, str] | None, code: str
) -> None:
    response = post(gateway, json=GOOD, key=key, headers=headers)
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == code and error["type"] == "authentication_error"


def test_unknown_path_and_wrong_method(gateway: Gateway) -> None:
    assert post(gateway, json=GOOD, path="/v1/nothing").status_code == 404
    response = post(gateway, path="/v1/chat/completions", method="GET")
    assert response.status_code == 405
    error_of(response)


def test_unknown_data_class_header(gateway: Gateway) -> None:
    response = post(gateway, json=GOOD, headers={"x-isthmus-data-class": "secret"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "unknown_data_class"


def test_rate_limit_is_429_with_retry_after(mini: Fabric) -> None:
    fabric = with_tenants(mini)
    lab = fabric.tenants["lab"].model_copy(update={"rpm_limit": 2})
    limited = Fabric(fabric.spec.model_copy(update={"tenants": (fabric.tenants["bank"], lab)}))
    gateway = Gateway(
        limited, GatewayConfig(site="onprem-paris", health_interval_s=0, log_decisions=False)
    )
    bad_model = {**GOOD, "model": "nope"}  # answered 404 without an upstream, but still counted
    codes = [post(gateway, json=bad_model, key=OTHER_KEY).status_code for _ in range(3)]
    assert codes[:2] != [429, 429] and codes[2] == 429
    response = post(gateway, json=bad_model, key=OTHER_KEY)
    assert response.headers["retry-after"]
    assert error_of(response)["code"] == "rate_limit_exceeded"


def test_the_highest_data_class_asked_for_applies(gateway: Gateway) -> None:
    """Header and body may both name a class: the highest applies, whichever comes first. In the
    mini fabric pii (the bank's default) goes to par-llama and phi only to iad-llama (no engine
    runs here: the endpoint tried is named in the 503)."""

    def tried(body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        response = post(gateway, json=body, headers=headers)
        assert response.status_code == 503, response.text
        return error_of(response)["message"].rsplit("last error: ", 1)[-1]

    phi_in_body = {**GOOD, "metadata": {"data_class": "phi"}}
    assert tried(GOOD).startswith("par-llama")
    assert tried(phi_in_body).startswith("iad-llama")
    assert tried(phi_in_body, {"x-isthmus-data-class": "pii"}).startswith("iad-llama")
    assert tried(GOOD, {"x-isthmus-data-class": "pii, phi"}).startswith("iad-llama")


def test_data_class_errors_name_where_the_class_was_asked(gateway: Gateway) -> None:
    response = post(gateway, json={**GOOD, "metadata": {"data_class": "secret"}})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unknown_data_class" and error["param"] == "metadata.data_class"
    response = post(
        gateway, json={**GOOD, "metadata": {"data_class": "public"}}, key=KEY
    )  # the bank's default is higher
    error = error_of(response)
    assert error["code"] == "data_class_lowered" and error["param"] == "metadata.data_class"


def test_two_classes_of_the_same_level_are_refused(mini: Fabric) -> None:
    from isthmus.fabric.schema import DataClass
    from isthmus.gateway.tenants import TenantDirectory

    fabric = with_tenants(mini)
    classes = (*fabric.spec.data_classes, DataClass(name="health-records", level=4))
    fabric = Fabric(fabric.spec.model_copy(update={"data_classes": classes}))
    directory = TenantDirectory(fabric)
    bank = fabric.tenants["bank"]
    header, body = "x-isthmus-data-class", "metadata.data_class"
    assert directory.data_class(bank) == "pii"
    assert directory.data_class(bank, [("pii", header), ("phi", body)]) == "phi"
    assert directory.data_class(bank, [("phi", header), ("pii", body)]) == "phi"
    with pytest.raises(ApiError) as refused:
        directory.data_class(bank, [("phi", header), ("health-records", body)])
    assert refused.value.status == 400 and refused.value.param == body


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": "nope"}, "tools"),
        ({"tools": 5}, "tools"),
        ({"tools": [5]}, "tools[0]"),
        ({"tools": ["x"]}, "tools[0]"),
        ({"tools": [{"function": {"name": "f"}}]}, "tools[0].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "function", "function": "f"}]}, "tools[0].function"),
        ({"tools": [{"type": "function", "function": {"name": 3}}]}, "tools[0].function.name"),
        ({"tool_choice": 3}, "tool_choice"),
        ({"response_format": "json"}, "response_format"),
        ({"stop": ["a", 1]}, "stop"),
        ({"seed": "x"}, "seed"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ],
)
def test_bad_generation_options_name_the_parameter(
    gateway: Gateway, extra: dict[str, Any], param: str
) -> None:
    response = post(gateway, json={**GOOD, **extra})
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param


def test_invalid_utf8_names_the_byte(gateway: Gateway) -> None:
    body = b'{"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    response = post(gateway, body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    message = error_of(response)["message"]
    assert "not valid UTF-8: byte 0xff at offset 68" in message, message


def test_made_up_model_names_do_not_grow_metrics_or_echo_in_full(mini: Fabric) -> None:
    gateway = Gateway(
        with_tenants(mini),
        GatewayConfig(site="onprem-paris", health_interval_s=0, log_decisions=False),
    )
    long_name = "m" * 60_000  # within both tenants' body limits
    for key in (KEY, OTHER_KEY):  # the bank may use any model, the lab only chat-small
        response = post(gateway, json={**GOOD, "model": long_name}, key=key)
        assert response.status_code in (403, 404)
        assert len(error_of(response)["message"]) < 400
    for k in range(20):
        post(gateway, json={**GOOD, "model": f"made-up-{k}"})
    metrics = post(gateway, path="/metrics", method="GET", key=None).text
    assert "made-up-" not in metrics and long_name[:100] not in metrics
    assert 'model="unknown"' in metrics
