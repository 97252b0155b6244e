"""Real traffic to the Pipedrive sandbox validated against Pipedrive's official v2 OpenAPI."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from sandbox.pipedrive import PipedriveSandbox
from sandbox.pipedrive.limits import TOKEN_COST
from sandbox.serving import RunningSandbox, serve
from tests.sandbox.test_pipedrive import small_seed

SPEC_PATH = Path("/work/shared/vendor-specs/pipedrive/v2.yaml")
SPEC_SERVER = "https://api.pipedrive.com"


def _patch_nullable_cursors(node: Any, patched: list[str]) -> None:
    """The spec's list schemas type ``next_cursor`` as a plain string while their own
    description (and the live API) says it is ``null`` on the last page; mark exactly
    those as nullable so that every other rule still applies."""
    if isinstance(node, dict):
        cursor = node.get("properties", {}).get("next_cursor")
        if (
            isinstance(cursor, dict) and cursor.get("type") == "string"
            and not cursor.get("nullable") and "null" in cursor.get("description", "")
        ):
            cursor["nullable"] = True
            patched.append(cursor["description"][:40])
        for value in node.values():
            _patch_nullable_cursors(value, patched)
    elif isinstance(node, list):
        for value in node:
            _patch_nullable_cursors(value, patched)


@functools.cache
def load_spec() -> dict[str, Any]:
    """The official spec as published (parsed once per test process: it is 1 MB)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open() as handle:
        spec: dict[str, Any] = yaml.load(handle, Loader=loader)  # safe loader
    return spec


@functools.cache
def load_openapi() -> OpenAPI:
    """The spec as a validator, with only the nullable ``next_cursor`` correction."""
    spec: Any = copy.deepcopy(load_spec())
    patched: list[str] = []
    _patch_nullable_cursors(spec, patched)
    assert len(patched) >= 2  # at least the deals and organizations lists
    return OpenAPI.from_dict(spec)


def validate_exchange(openapi: OpenAPI, base_url: str, response: requests.Response) -> None:
    """Validate a request that was sent to ``base_url`` and its response as if they had
    gone to Pipedrive."""
    as_vendor = response.request.copy()
    as_vendor.url = (as_vendor.url or "").replace(base_url, SPEC_SERVER)
    spec_request = RequestsOpenAPIRequest(as_vendor)
    openapi.validate_request(spec_request)
    openapi.validate_response(spec_request, RequestsOpenAPIResponse(response))


@pytest.fixture(scope="session")
def raw_spec() -> dict[str, Any]:
    return load_spec()


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    return load_openapi()


@pytest.fixture(scope="module")
def running() -> Iterator[RunningSandbox]:
    server = serve(PipedriveSandbox.from_seed(small_seed(accounts=8, deals=6), burst_limit=1000))
    yield server
    server.stop()


class Validated:
    """Sends a request, then validates it and its answer against the spec."""

    def __init__(self, running: RunningSandbox, openapi: OpenAPI) -> None:
        self.app: PipedriveSandbox = running.app  # type: ignore[assignment]  # served app
        self.base = running.base_url
        self.openapi = openapi
        self.session = requests.Session()

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"x-api-token": self.app.api_token}
        req = requests.Request(method, self.base + path, headers=headers, **kwargs)
        prepared = self.session.prepare_request(req)
        response = self.session.send(prepared)
        assert response.status_code == 200, response.text
        validate_exchange(self.openapi, self.base, response)
        return response


@pytest.fixture
def call(running: RunningSandbox, openapi: OpenAPI) -> Validated:
    return Validated(running, openapi)


def test_list_traffic_validates(call: Validated) -> None:
    body = call("GET", "/api/v2/deals", params={"limit": 2, "sort_by": "update_time"}).json()
    call("GET", "/api/v2/deals", params={"limit": 2, "sort_by": "update_time",
                                         "cursor": body["additional_data"]["next_cursor"]})
    call("GET", "/api/v2/deals", params={"updated_since": "2026-01-01T00:00:00Z",
                                         "updated_until": "2030-01-01T00:00:00Z",
                                         "sort_direction": "desc", "status": "won"})
    last = call("GET", "/api/v2/deals", params={"limit": 500}).json()
    assert last["additional_data"]["next_cursor"] is None
    call("GET", "/api/v2/organizations", params={"limit": 3, "sort_by": "add_time"})
    key = call.app.field_key("organizations", "DUNS number")
    call("GET", "/api/v2/organizations", params={"custom_fields": key, "ids": "1,2"})
    call("GET", "/api/v2/deals/1")
    call("GET", "/api/v2/organizations/1")


def test_field_traffic_validates(call: Validated) -> None:
    first = call("GET", "/api/v2/dealFields", params={"limit": 5}).json()
    call("GET", "/api/v2/dealFields",
         params={"limit": 500, "cursor": first["additional_data"]["next_cursor"]})
    call("GET", "/api/v2/organizationFields")


def test_write_traffic_validates(call: Validated) -> None:
    fields = call.app.company.fields
    status = fields.custom_by_name("deals", "Registration status")
    assert status is not None
    deal_body = {
        "title": "Renamed", "value": 2500.5, "currency": "USD", "status": "won",
        "custom_fields": {
            status.field_code: status.option_id("Expired"),
            call.app.field_key("deals", "Registration expires"): "2026-12-31",
            call.app.field_key("deals", "Channel conflict reason"): None,
        },
    }
    call("PATCH", "/api/v2/deals/2", json=deal_body)
    conflict = fields.custom_by_name("organizations", "Channel conflict")
    assert conflict is not None
    org_body = {"custom_fields": {conflict.field_code: conflict.option_id("Yes")},
                "website": "https://acme.example"}
    call("PATCH", "/api/v2/organizations/2", json=org_body)
    created = call("POST", "/api/v2/deals", json={"title": "New deal", "org_id": 1}).json()
    call("DELETE", f"/api/v2/deals/{created['data']['id']}")
    call("GET", "/api/v2/deals", params={"status": "deleted"})
    org = call("POST", "/api/v2/organizations", json={"name": "Brand new Ltd"}).json()
    call("DELETE", f"/api/v2/organizations/{org['data']['id']}")


def test_token_cost_table_matches_the_spec(raw_spec: dict[str, Any]) -> None:
    for (method, route), cost in TOKEN_COST.items():
        if not route.startswith("/api/v2/"):
            continue
        path = route.removeprefix("/api/v2").replace("<int:record_id>", "{id}")
        operation = raw_spec["paths"][path][method.lower()]
        assert operation["x-token-cost"] == cost, (method, route)


def test_validator_rejects_a_null_where_the_spec_forbids_it(call: Validated) -> None:
    """Guards the harness itself: a response with ``won_time: null`` must not pass."""
    from openapi_core.validation.response.exceptions import InvalidData

    response = call("GET", "/api/v2/deals", params={"status": "won"})
    assert b'"won_time":"' in response.content
    response._content = response.content.replace(b'"won_time":"', b'"won_time":null,"x":"')
    prepared = response.request.copy()
    prepared.url = (prepared.url or "").replace(call.base, SPEC_SERVER)
    with pytest.raises(InvalidData):
        call.openapi.validate_response(
            RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response)
        )
