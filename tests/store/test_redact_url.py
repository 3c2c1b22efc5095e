"""URLs with credentials appear in logs and messages with the password hidden."""

from __future__ import annotations

import pytest

from isthmus.mesh.shared_state import shared_state_from_url
from isthmus.store.urls import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://user:pw@nats.internal:4222", "nats://user:***@nats.internal:4222"),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://u:p@[::1]:6380/1", "rediss://u:***@[::1]:6380/1"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("http://[broken", "<unparsable URL>"),
    ],
)
def test_passwords_are_hidden(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_bad_redis_url_is_explained_without_its_password() -> None:
    with pytest.raises(ValueError) as caught:
        shared_state_from_url("http://:hunter2@redis.internal:6379", "onprem-paris")
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
