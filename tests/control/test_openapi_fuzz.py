"""Schemathesis against the admin API's own OpenAPI document, in-process through ASGI (slow).

Every operation gets generated valid and invalid input as an admin: no answer may be a 5xx,
every answer must match the document (documented status, content type, body schema), and
input the document forbids must be refused. ``positive_data_acceptance`` is left out: a
string that is schema-valid YAML text may still be a fabric with problems (a located 422).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.openapi import from_asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from isthmus.control import create_app
from isthmus.fabric.loader import load_fabric_text
from tests.control.conftest import ADMIN, bearer, fabric_text, make_plane

pytestmark = pytest.mark.slow

# schemathesis parametrizes at collection time, so the app exists before fixtures do; its
# database is a file in a directory of its own that the operating system cleans up
_plane = make_plane(Path(tempfile.mkdtemp(prefix="isthmus-control-fuzz-")))
_plane.store.import_fabric(load_fabric_text(fabric_text()), _plane.config.catalog)
schema = from_asgi("/openapi.json", create_app(_plane, manage_mesh=False))


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=bearer(ADMIN), excluded_checks=[positive_data_acceptance])
