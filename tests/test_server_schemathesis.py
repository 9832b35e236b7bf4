"""The server's OpenAPI document holds: schemathesis drives every operation through the ASGI app and checks
no 5xx, no undocumented status code, content type, header or body shape.

Bounded and deterministic: a few derandomized examples per operation, over a small real log.
(``positive_data_acceptance`` is left out on purpose: a well-formed envelope that is not signed by an
admitted party is refused, as it must be.)
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings
from scenario_kit import labs_world
from schemathesis import checks

from redline.server import create_app

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]


def _app():
    tmp = Path(tempfile.mkdtemp(prefix="redline-schemathesis-"))
    atexit.register(shutil.rmtree, tmp, True)
    return create_app(labs_world(tmp).registry)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=15, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case) -> None:
    case.call_and_validate(checks=CHECKS)
