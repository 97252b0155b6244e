"""Fault injection on all four sandboxes: every kind, set at start and changed while running
(``PATCH /__sandbox/faults``), each failing the way that vendor fails."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import orjson
import pytest
import requests

from sandbox.core import Faults, Rejection
from tests.sandbox.conftest import VENDORS, SandboxStarter, VendorClient

Check = Callable[[requests.Response], None]
REJECT_OBJECT = {"salesforce": "Opportunity", "hubspot": "deals", "pipedrive": "deals",
                 "dynamics": "opportunities"}


def _sf_error(status: int, code: str) -> Check:
    def check(answer: requests.Response) -> None:
        assert answer.status_code == status
        body = answer.json()
        assert isinstance(body, list) and body[0]["errorCode"] == code and body[0]["message"]
    return check


def _hs_error(status: int, category: str) -> Check:
    def check(answer: requests.Response) -> None:
        assert answer.status_code == status
        body = answer.json()
        assert body["status"] == "error" and body["category"] == category
        assert body["message"] and body["correlationId"]
    return check


def _pd_error(status: int) -> Check:
    def check(answer: requests.Response) -> None:
        assert answer.status_code == status
        body = answer.json()
        assert body["success"] is False and body["error"] and body["data"] is None
    return check


def _dv_error(status: int, code: str) -> Check:
    def check(answer: requests.Response) -> None:
        assert answer.status_code == status
        assert answer.json()["error"]["code"] == code
    return check


def _hs_rate_limited(answer: requests.Response) -> None:
    assert answer.status_code == 429
    body = answer.json()
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"]
    assert answer.headers["X-HubSpot-RateLimit-Remaining"] == "0"


def _pd_rate_limited(answer: requests.Response) -> None:
    _pd_error(429)(answer)
    assert answer.headers["x-ratelimit-remaining"] == "0"
    assert int(answer.headers["x-ratelimit-reset"]) > 0


def _dv_rate_limited(answer: requests.Response) -> None:
    _dv_error(429, "0x80072322")(answer)
    assert int(answer.headers["Retry-After"]) >= 1


def _dv_expired(answer: requests.Response) -> None:
    assert answer.status_code == 401
    assert "invalid_token" in answer.headers["WWW-Authenticate"]


SERVER_ERROR: dict[str, Check] = {
    "salesforce": _sf_error(500, "UNKNOWN_EXCEPTION"),
    "hubspot": _hs_error(500, "INTERNAL_ERROR"),
    "pipedrive": _pd_error(500),
    "dynamics": _dv_error(500, "0x80040216"),
}
RATE_LIMITED: dict[str, Check] = {
    # Salesforce has no 429: its request limits answer 403 REQUEST_LIMIT_EXCEEDED
    "salesforce": _sf_error(403, "REQUEST_LIMIT_EXCEEDED"),
    "hubspot": _hs_rate_limited,
    "pipedrive": _pd_rate_limited,
    "dynamics": _dv_rate_limited,
}
TOKEN_EXPIRED: dict[str, Check] = {
    "salesforce": _sf_error(401, "INVALID_SESSION_ID"),
    "hubspot": _hs_error(401, "EXPIRED_AUTHENTICATION"),
    "pipedrive": _pd_error(401),
    "dynamics": _dv_expired,
}
REJECTED: dict[str, Check] = {
    "salesforce": _sf_error(400, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
    "hubspot": _hs_error(400, "VALIDATION_ERROR"),
    "pipedrive": _pd_error(400),
    "dynamics": _dv_error(400, "0x80040265"),
}


@pytest.fixture(params=VENDORS)
def box(request: pytest.FixtureRequest, running: dict[str, VendorClient]) -> Iterator[VendorClient]:
    """Each vendor's sandbox in turn; the faults are reset after each test."""
    client = running[request.param]
    assert client.read().status_code == 200
    yield client
    client.admin("PATCH", "faults", json=asdict(Faults()))


def _patch(box: VendorClient, **values: Any) -> None:
    answer = box.admin("PATCH", "faults", json=values)
    assert answer.status_code == 200, answer.text
    for key, value in values.items():
        if key != "expire_tokens":
            assert answer.json()[key] == value


def test_server_error_rate(box: VendorClient) -> None:
    _patch(box, error_rate=1.0)
    SERVER_ERROR[box.vendor](box.read())
    SERVER_ERROR[box.vendor](box.read())
    _patch(box, error_rate=0.0)
    assert box.read().status_code == 200


def test_latency(box: VendorClient) -> None:
    _patch(box, latency_ms=150)
    started = time.monotonic()
    assert box.read().status_code == 200
    assert time.monotonic() - started >= 0.15  # a lower bound: the delay was injected


def test_dropped_connections(box: VendorClient) -> None:
    _patch(box, drop_rate=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        box.read()
    _patch(box, drop_rate=0.0)
    assert box.read().status_code == 200


def test_truncated_bodies(box: VendorClient) -> None:
    _patch(box, truncate_rate=1.0)
    with pytest.raises((requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ConnectionError)):
        box.read().content  # noqa: B018  # reading the body is what fails
    _patch(box, truncate_rate=0.0)
    assert box.read().status_code == 200


def test_malformed_bodies(box: VendorClient) -> None:
    _patch(box, malformed_rate=1.0)
    answer = box.read()
    assert answer.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(answer.content)
    _patch(box, malformed_rate=0.0)
    assert orjson.loads(box.read().content)


def test_forced_rate_limiting(box: VendorClient) -> None:
    _patch(box, rate_limit_all=True)
    RATE_LIMITED[box.vendor](box.read())
    RATE_LIMITED[box.vendor](box.read())
    _patch(box, rate_limit_all=False, rate_limit_next=1)
    RATE_LIMITED[box.vendor](box.read())
    assert box.read().status_code == 200


def test_token_expiry(box: VendorClient) -> None:
    _patch(box, expire_tokens=True)
    TOKEN_EXPIRED[box.vendor](box.read())
    _patch(box, tokens_expired_before=0.0)
    assert box.read().status_code == 200


def test_validation_rules_reject_chosen_records(box: VendorClient) -> None:
    target = box.deal_id("D1")
    _patch(box, rejections=[{"object": REJECT_OBJECT[box.vendor], "ids": [target],
                             "field": None, "message": "Blocked by a channel rule"}])
    answer = box.rename_deal("D1", "Renamed")
    REJECTED[box.vendor](answer)
    assert "Blocked by a channel rule" in answer.text
    assert box.rename_deal("D2", "Renamed").status_code in (200, 204)


@pytest.mark.parametrize("vendor", VENDORS)
def test_faults_set_at_start(vendor: str, start_sandbox: SandboxStarter) -> None:
    """Faults given when the sandbox starts apply from its first request, in the order the
    dispatcher checks them: drop, rate limit, server error; the rule and the latency stay."""
    client = start_sandbox(vendor, faults=Faults(
        drop_next=1, rate_limit_next=1, error_next=1, latency_ms=50,
        rejections=[Rejection(object=REJECT_OBJECT[vendor], ids=[], message="Frozen at start")]))
    with pytest.raises(requests.exceptions.ConnectionError):
        client.read()
    RATE_LIMITED[vendor](client.read())
    SERVER_ERROR[vendor](client.read())
    client.refresh_auth()
    started = time.monotonic()
    assert client.read().status_code == 200
    assert time.monotonic() - started >= 0.05
    REJECTED[vendor](client.rename_deal("D1", "Renamed"))


READ_ROUTE = {"salesforce": "GET /services/data/v<version>/query",
              "hubspot": "GET /crm/v3/objects/<obj>",
              "pipedrive": "GET /api/v2/organizations",
              "dynamics": "GET /api/data/v9.2/<set_name>"}


def test_request_log_counts_per_endpoint_and_method(box: VendorClient) -> None:
    """The log tests and benchmarks read to assert API-call counts: admin calls and the
    calls before a reset are not in it; failed and faulted calls are."""
    assert box.admin("DELETE", "requests").json() == {}
    for _ in range(3):
        assert box.read().status_code == 200
    _patch(box, error_next=1)
    SERVER_ERROR[box.vendor](box.read())
    box.rename_deal("D1", "Logged")
    snapshot = box.admin("GET", "requests").json()
    assert snapshot[READ_ROUTE[box.vendor]] == 4
    writes = {k: n for k, n in snapshot.items() if k.startswith("PATCH ")}
    assert list(writes.values()) == [1], snapshot
    assert sum(snapshot.values()) == 5 and not any("__sandbox" in k for k in snapshot)
    assert box.app.requests.count("GET") == 4 and box.app.requests.count("PATCH") == 1
