"""The shared connector plumbing: the quota governor's re-check, header and status helpers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from connectors.base import did_you_mean
from connectors.errors import BudgetExhaustedError
from connectors.http import QuotaGovernor, header_int, http_date, make_session, retry_worthy


def test_a_spent_share_is_rechecked_once_per_interval_after_the_vendor_figure_ages() -> None:
    now = [0.0]
    quota = QuotaGovernor(unit="requests", window="day", limit=None, share=0.5,
                          clock=lambda: now[0])
    assert quota.recheck_after_s == 900.0
    quota.observe(used=50, limit=100)  # the vendor: 50 of 100 spent, our share is 50
    with pytest.raises(BudgetExhaustedError, match="50/50"):
        quota.charge()
    now[0] = 899.0
    with pytest.raises(BudgetExhaustedError):
        quota.charge()
    now[0] = 901.0
    quota.charge()  # one request re-learns the usage from the vendor's answer
    with pytest.raises(BudgetExhaustedError):  # ...and only one, until it answers
        quota.charge()
    quota.observe(used=3, limit=100)  # a new day at the vendor
    quota.charge()
    assert quota.status().used == 4 and quota.spent_here == 2


def test_a_share_spent_by_our_own_count_is_not_rechecked() -> None:
    now = [0.0]
    quota = QuotaGovernor(unit="tokens", window="day", limit=20, share=0.5, clock=lambda: now[0])
    for _ in range(10):
        quota.charge()
    now[0] = 10**6
    with pytest.raises(BudgetExhaustedError):  # nothing the vendor said can have aged
        quota.charge()


def test_header_int_reads_plain_and_lower_case_headers() -> None:
    assert header_int({"X-RateLimit-Remaining": "7"}, "X-RateLimit-Remaining") == 7
    assert header_int({"x-ratelimit-remaining": "7"}, "X-RateLimit-Remaining") == 7
    assert header_int({"x-ratelimit-remaining": "lots"}, "x-ratelimit-remaining") is None
    assert header_int({}, "x") is None and header_int(None, "x") is None


@pytest.mark.parametrize(("status", "worthy"), [(408, True), (500, True), (503, True),
                                                (400, False), (401, False), (429, False)])
def test_retry_worthy_statuses(status: int, worthy: bool) -> None:
    assert retry_worthy(status) is worthy


def test_did_you_mean_offers_close_and_case_only_matches() -> None:
    assert did_you_mean("dealnme", ["dealname", "amount"]) == " (did you mean 'dealname'?)"
    assert did_you_mean("ACCOUNTID", ["accountid"], cutoff=0.99) == (
        " (did you mean 'accountid'?)")
    assert did_you_mean("zzz", ["dealname"]) == ""


def test_sessions_time_out_requests_that_set_no_timeout() -> None:
    from tests.connectors.harness_pipedrive import PipedriveHarness

    h = PipedriveHarness()
    try:
        session = make_session(ca_bundle=str(h.tls.ca_file), timeout_s=0.2)
        url = f"{h.running.base_url}/api/v2/organizations"
        headers = {"x-api-token": h.app.api_token}
        assert session.get(url, headers=headers).status_code == 200
        h.app.faults.latency_ms = 1000  # the server stops answering in time
        with pytest.raises(requests.Timeout):
            session.get(url, headers=headers)  # as simple-salesforce and msal call it
        assert session.get(url, headers=headers, timeout=5).status_code == 200  # caller's own
    finally:
        h.app.faults.latency_ms = 0
        h.stop()


def test_http_date_reads_the_date_header_in_utc_and_ignores_garbage() -> None:
    assert http_date("Thu, 26 Nov 2026 22:41:59 GMT") == datetime(2026, 11, 26, 22, 41, 59,
                                                                 tzinfo=UTC)
    assert http_date(None) is None and http_date("") is None and http_date("soon") is None
