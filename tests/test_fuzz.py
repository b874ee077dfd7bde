"""Fuzzing every public route with schemathesis against a real gateway, from its own /openapi.json:
no 5xx (except a documented 503), every status, content type and body as documented."""
from __future__ import annotations

import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from harness import ROOT, SITE_ORIGIN, grant

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 12  # per operation: 33 operations x 12 keeps the run well under 90 s on a loaded machine


def app_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route wired in gateway/app.py, read from its source."""
    source = (ROOT / "gateway" / "app.py").read_text()
    routes = set()
    for path, methods in re.findall(r'Route\("([^"]+)",[^\n]*?methods=\[([^\]]*)\]', source):
        for method in re.findall(r'"(\w+)"', methods):
            routes.add((method, path))
    return routes


def test_the_public_document_covers_every_route(module_gateway):
    doc = httpx.get(f"{module_gateway.url}/openapi.json", timeout=10).json()
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert app_routes() - documented == set(), "routes missing from gateway/openapi.py public_openapi_document"
    assert documented - app_routes() == set(), "documented routes that do not exist"


@pytest.fixture(scope="module")
def fuzz_target(module_gateway):
    """The gateway's own document, with the examples schemathesis should start from pointed at real values."""
    with module_gateway.client() as c:
        token = grant(c, analytics=True, marketing=True)["token"]
    doc = httpx.get(f"{module_gateway.url}/openapi.json", timeout=10).json()
    return module_gateway, schemathesis.openapi.from_dict(doc), token


def test_schemathesis_finds_no_5xx_and_no_schema_violation(fuzz_target):
    gw, schema, token = fuzz_target
    failures: list[str] = []
    statuses: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case) -> None:
            if case.path_parameters and "site" in case.path_parameters and case.path_parameters["site"] == "":
                case.path_parameters["site"] = "demo"
            response = case.call(base_url=gw.url, headers={"Origin": SITE_ORIGIN}, timeout=15)
            statuses.append(response.status_code)
            try:
                case.validate_response(response, checks=CHECKS)
            except BaseException as exc:  # collected, so one run reports every operation that fails
                failures.append(f"{operation.label}: {str(exc)[:600]}")

        run()
    assert len(statuses) >= 3 * len(operations) and any(s < 300 for s in statuses) and any(s >= 400 for s in statuses)
    assert failures == [], "\n\n".join(dict.fromkeys(failures))
    assert httpx.get(f"{gw.url}/healthz", timeout=10).status_code == 200
    assert "Traceback" not in gw.logs()
