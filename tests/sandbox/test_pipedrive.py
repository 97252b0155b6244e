"""The Pipedrive sandbox against Pipedrive's documented behaviour, driven with plain requests."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
import requests

from sandbox.pipedrive import PipedriveSandbox
from sandbox.serving import RunningSandbox, serve
from sandbox.world import CrmSeed, SeedAccount, SeedDeal, SeedUser

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def small_seed(accounts: int = 6, deals: int = 4) -> CrmSeed:
    users = [SeedUser("u1", "Ann Admin", "ann@dist.example"), SeedUser("u2", "Bo", "bo@x.io")]
    accs = [
        SeedAccount(
            key=f"a{i}", name=f"Acme {i} GmbH", website=f"acme{i}.de", country="DE",
            duns=f"31-000-{i:04d}", vat_id=None, owner_user="u1" if i % 2 else "u2",
            channel_owner="D-7" if i == 0 else None,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            modified_at=datetime(2026, 1, 2, 0, 0, i, tzinfo=UTC),
        )
        for i in range(accounts)
    ]
    dls = [
        SeedDeal(
            key=f"d{i}", account_key=f"a{i % accounts}", name=f"Deal {i}",
            amount=Decimal("1000.50") + i, currency="EUR",
            stage=("open", "won", "lost")[i % 3], close_date=date(2026, 9, 1),
            created_at=datetime(2026, 2, 1, tzinfo=UTC),
            modified_at=datetime(2026, 2, 2, 0, 0, i, tzinfo=UTC),
            registered_by="D-7", registered_at=datetime(2026, 2, 1, tzinfo=UTC),
            registration_status="active", registration_expires_at=date(2026, 5, 1),
        )
        for i in range(deals)
    ]
    return CrmSeed("pd-dist", "pipedrive", "distributor", "D-7", users, accs, dls)


class Client:
    """A plain requests client for one running sandbox."""

    def __init__(self, running: RunningSandbox) -> None:
        self.running = running
        self.app: PipedriveSandbox = running.app  # type: ignore[assignment]  # served app
        self.base = running.base_url
        self.session = requests.Session()

    def call(self, method: str, path: str, *, token: str | None = None,
             **kwargs: Any) -> requests.Response:
        headers = {"x-api-token": self.app.api_token if token is None else token}
        return self.session.request(method, self.base + path, headers=headers, **kwargs)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.call("GET", path, params=params)

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        cursor = params.pop("cursor", None)
        while True:
            body = self.get(path, **params, **({"cursor": cursor} if cursor else {})).json()
            yield body
            cursor = body["additional_data"]["next_cursor"]
            if cursor is None:
                return


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningSandbox]:
    """One server per module; each test swaps in its own app (stopping a werkzeug server
    waits for its half-second poll, too slow to pay per test)."""
    running = serve(PipedriveSandbox())
    yield running
    running.stop()


@pytest.fixture
def attach(server: RunningSandbox) -> Callable[[PipedriveSandbox], Client]:
    def use(app: PipedriveSandbox) -> Client:
        server.app = app
        server.server.app = app  # the request handler reads the app from the server
        return Client(server)

    return use


@pytest.fixture
def pd(clock: FakeClock, attach: Callable[[PipedriveSandbox], Client]) -> Client:
    return attach(PipedriveSandbox.from_seed(small_seed(), clock=clock, burst_limit=1000))


def _ids(body: dict[str, Any]) -> list[int]:
    return [d["id"] for d in body["data"]]


# -- auth ------------------------------------------------------------------------------
@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_missing_or_bad_token_is_401_in_pipedrive_envelope(pd: Client, token: str) -> None:
    resp = pd.call("GET", "/api/v2/deals", token=token)
    assert resp.status_code == 401
    body = resp.json()
    assert body["success"] is False and body["errorCode"] == 401
    assert body["error"] == "unauthorized access" and "error_info" in body


def test_token_in_query_string_is_not_accepted_by_v2(pd: Client) -> None:
    resp = pd.session.get(pd.base + "/api/v2/deals", params={"api_token": pd.app.api_token})
    assert resp.status_code == 401


def test_expired_token_fault_then_rotated_token_works(pd: Client) -> None:
    pd.app.faults.expire_tokens()
    assert pd.get("/api/v2/deals").status_code == 401
    pd.app.rotate_token()
    assert pd.get("/api/v2/deals").status_code == 200


def test_v2_path_needs_api_prefix(pd: Client) -> None:
    resp = pd.call("GET", "/v2/deals")
    assert resp.status_code == 404 and resp.json()["success"] is False


# -- listing and paging ----------------------------------------------------------------
def test_default_limit_is_100_and_max_500(clock: FakeClock, attach: Any) -> None:
    app = PipedriveSandbox(clock=clock, burst_limit=1000)
    for i in range(520):
        app.user_create("organizations", {"name": f"Org {i}"})
    pd = attach(app)
    assert len(pd.get("/api/v2/organizations").json()["data"]) == 100
    assert len(pd.get("/api/v2/organizations", limit=500).json()["data"]) == 500
    too_many = pd.get("/api/v2/organizations", limit=501)
    assert too_many.status_code == 400 and too_many.json()["success"] is False
    seen = [i for body in pd.pages("/api/v2/organizations", limit=500) for i in _ids(body)]
    assert seen == list(range(1, 521))


def test_cursor_paging_is_opaque_and_ends_with_null(pd: Client) -> None:
    bodies = list(pd.pages("/api/v2/organizations", limit=4, sort_by="update_time"))
    assert len(bodies) == 2
    assert bodies[-1]["additional_data"]["next_cursor"] is None
    assert [i for b in bodies for i in _ids(b)] == [1, 2, 3, 4, 5, 6]
    cursor = bodies[0]["additional_data"]["next_cursor"]
    decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert decoded["field"] == "update_time" and decoded["id"] == 5


def test_bad_cursor_and_bad_params_are_400(pd: Client) -> None:
    assert pd.get("/api/v2/deals", cursor="%%%").status_code == 400
    assert pd.get("/api/v2/deals", sort_by="title").status_code == 400
    assert pd.get("/api/v2/deals", updated_since="2026-01-01").status_code == 400
    assert pd.get("/api/v2/deals", status="archived").status_code == 400
    assert pd.get("/api/v2/deals", custom_fields=",".join(f"k{i}" for i in range(16))
                  ).status_code == 400


def test_updated_since_is_inclusive_and_updated_until_exclusive(pd: Client) -> None:
    body = pd.get("/api/v2/organizations", updated_since="2026-01-02T00:00:02Z",
                  updated_until="2026-01-02T00:00:04Z", sort_by="update_time").json()
    assert _ids(body) == [3, 4]


def test_sort_directions(pd: Client) -> None:
    desc = pd.get("/api/v2/organizations", sort_by="update_time", sort_direction="desc").json()
    assert _ids(desc) == [6, 5, 4, 3, 2, 1]
    pages = list(pd.pages("/api/v2/organizations", sort_by="id", sort_direction="desc", limit=4))
    assert [i for b in pages for i in _ids(b)] == [6, 5, 4, 3, 2, 1]


def test_record_modified_while_paging_moves_to_a_later_page(pd: Client) -> None:
    first = pd.get("/api/v2/organizations", sort_by="update_time", limit=3).json()
    pd.app.user_update("organizations", 2, {"website": "acme-new.de"})
    rest = list(pd.pages("/api/v2/organizations", sort_by="update_time", limit=3,
                         cursor=first["additional_data"]["next_cursor"]))
    assert [i for b in rest for i in _ids(b)] == [4, 5, 6, 2]


def test_filters_ids_owner_org_and_status(pd: Client) -> None:
    assert _ids(pd.get("/api/v2/organizations", ids="2,4,99").json()) == [2, 4]
    owned = pd.get("/api/v2/organizations", owner_id=1).json()
    assert all(d["owner_id"] == 1 for d in owned["data"]) and len(owned["data"]) == 3
    assert _ids(pd.get("/api/v2/deals", org_id=2).json()) == [2]
    assert _ids(pd.get("/api/v2/deals", status="won").json()) == [2]
    assert _ids(pd.get("/api/v2/deals", status="open,lost").json()) == [1, 3, 4]


def test_deleted_deals_listed_only_with_status_deleted_for_30_days(
    pd: Client, clock: FakeClock
) -> None:
    before = pd.get("/api/v2/deals/1").json()["data"]["update_time"]
    clock.advance(10)
    assert pd.call("DELETE", "/api/v2/deals/1").json() == {"success": True, "data": {"id": 1}}
    assert 1 not in _ids(pd.get("/api/v2/deals").json())
    deleted = pd.get("/api/v2/deals", status="deleted").json()["data"]
    assert [d["id"] for d in deleted] == [1] and deleted[0]["is_deleted"] is True
    assert deleted[0]["update_time"] > before
    assert pd.call("PATCH", "/api/v2/deals/1", json={"title": "x"}).status_code == 404
    clock.advance(31 * 86400)
    assert pd.get("/api/v2/deals", status="deleted").json()["data"] == []
    assert pd.get("/api/v2/deals/1").status_code == 404


def test_deleted_organizations_vanish_and_status_filter_is_ignored(pd: Client) -> None:
    assert pd.call("DELETE", "/api/v2/organizations/3").status_code == 200
    assert 3 not in _ids(pd.get("/api/v2/organizations").json())
    assert 3 not in _ids(pd.get("/api/v2/organizations", status="deleted").json())


def test_custom_fields_param_limits_the_custom_fields_returned(pd: Client) -> None:
    key = pd.app.field_key("deals", "Registered by")
    body = pd.get("/api/v2/deals", custom_fields=key).json()
    assert all(d["custom_fields"] == {key: "D-7"} for d in body["data"])


def test_get_single_record(pd: Client) -> None:
    body = pd.get("/api/v2/organizations/2").json()
    assert body["success"] is True and body["data"]["name"] == "Acme 1 GmbH"
    missing = pd.get("/api/v2/organizations/999")
    assert missing.status_code == 404 and missing.json()["error"] == "Entity was not found"


# -- custom fields and writes ----------------------------------------------------------
def test_hash_keys_and_option_ids_differ_between_instances() -> None:
    one, two = PipedriveSandbox.from_seed(small_seed()), PipedriveSandbox.from_seed(small_seed())
    key_one = one.field_key("deals", "Registration status")
    assert len(key_one) == 40 and all(c in "0123456789abcdef" for c in key_one)
    assert key_one != two.field_key("deals", "Registration status")
    same_seed = PipedriveSandbox.from_seed(small_seed(), key_seed=one.key_seed)
    assert same_seed.field_key("deals", "Registration status") == key_one


def test_fields_endpoint_shape_and_cursor_paging(pd: Client) -> None:
    bodies = list(pd.pages("/api/v2/dealFields", limit=10))
    fields = [f for b in bodies for f in b["data"]]
    assert len(bodies) > 1
    status = next(f for f in fields if f["field_name"] == "Registration status")
    assert status["field_type"] == "enum" and status["is_custom_field"] is True
    assert {o["label"] for o in status["options"]} >= {"Active", "Expired"}
    assert all(isinstance(o["id"], int) for o in status["options"])
    builtin_status = next(f for f in fields if f["field_code"] == "status")
    assert all(isinstance(o["id"], str) for o in builtin_status["options"])
    orgs = [f for b in pd.pages("/api/v2/organizationFields") for f in b["data"]]
    assert {"DUNS number", "Channel conflict"} <= {f["field_name"] for f in orgs}


def _option(pd: Client, entity: str, name: str, label: str) -> int:
    fdef = pd.app.company.fields.custom_by_name(entity, name)
    assert fdef is not None
    return fdef.option_id(label)


def test_patch_writes_custom_fields_and_bumps_update_time(pd: Client, clock: FakeClock) -> None:
    key = pd.app.field_key("deals", "Registration status")
    old = pd.get("/api/v2/deals/1").json()["data"]["update_time"]
    clock.advance(5)
    expired = _option(pd, "deals", "Registration status", "Expired")
    resp = pd.call("PATCH", "/api/v2/deals/1", json={"custom_fields": {key: expired}})
    assert resp.status_code == 200
    data = resp.json()["data"]
    assert data["custom_fields"][key] == expired and data["update_time"] > old
    assert pd.app.company.custom_value("deals", 1, "Registration status") == "Expired"
    listed = pd.get("/api/v2/deals", updated_since=data["update_time"]).json()
    assert _ids(listed) == [1]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Registration status", "Active"),  # enum takes the option id, not the label
        ("Registration status", "151"),  # no string-to-number coercion
        ("Registration status", 999_999),  # unknown option id
        ("Registration expires", "01/05/2026"),
        ("Channel owner", 42),
    ],
)
def test_strict_v2_validation_of_custom_fields(pd: Client, name: str, value: Any) -> None:
    key = pd.app.field_key("deals", name)
    resp = pd.call("PATCH", "/api/v2/deals/1", json={"custom_fields": {key: value}})
    assert resp.status_code == 400
    body = resp.json()
    assert body["success"] is False and key in body["error"] and body["data"] is None


def test_set_fields_take_arrays_of_ids_and_reject_empty_arrays(pd: Client) -> None:
    fdef = pd.app.company.fields.add_custom("deals", "Regions", "set", ["North", "South"])
    ids = [o["id"] for o in fdef.options or ()]
    ok = pd.call("PATCH", "/api/v2/deals/2", json={"custom_fields": {fdef.field_code: ids}})
    assert ok.status_code == 200
    empty = pd.call("PATCH", "/api/v2/deals/2", json={"custom_fields": {fdef.field_code: []}})
    assert empty.status_code == 400
    cleared = pd.call("PATCH", "/api/v2/deals/2", json={"custom_fields": {fdef.field_code: None}})
    assert cleared.json()["data"]["custom_fields"][fdef.field_code] is None


def test_monetary_custom_fields_take_value_and_currency(pd: Client) -> None:
    fdef = pd.app.company.fields.add_custom("deals", "Rebate", "monetary")
    good = {"custom_fields": {fdef.field_code: {"value": 12.5, "currency": "EUR"}}}
    assert pd.call("PATCH", "/api/v2/deals/2", json=good).status_code == 200
    bad = {"custom_fields": {fdef.field_code: 12.5}}
    assert pd.call("PATCH", "/api/v2/deals/2", json=bad).status_code == 400


def test_builtin_validation_and_unknown_keys(pd: Client) -> None:
    assert pd.call("PATCH", "/api/v2/deals/1", json={"value": "100"}).status_code == 400
    assert pd.call("PATCH", "/api/v2/deals/1", json={"owner_id": 77}).status_code == 400
    assert pd.call("PATCH", "/api/v2/deals/1", json={"update_time": "x"}).status_code == 400
    unknown = {"custom_fields": {"0" * 40: "x"}}
    assert pd.call("PATCH", "/api/v2/deals/1", json=unknown).status_code == 400
    assert pd.call("PATCH", "/api/v2/organizations/1", data=b"{").status_code == 400
    won = pd.call("PATCH", "/api/v2/deals/1", json={"status": "won"}).json()["data"]
    assert won["status"] == "won" and won["won_time"] == won["update_time"]


def test_rejection_rule_refuses_chosen_records(pd: Client) -> None:
    pd.app.faults.update({"rejections": [{"object": "organizations", "ids": ["2"],
                                          "message": "Blocked by rule"}]})
    key = pd.app.field_key("organizations", "Channel owner")
    body = {"custom_fields": {key: "direct"}}
    refused = pd.call("PATCH", "/api/v2/organizations/2", json=body)
    assert refused.status_code == 400 and refused.json()["error"] == "Blocked by rule"
    assert pd.call("PATCH", "/api/v2/organizations/3", json=body).status_code == 200


def test_users_endpoint_lists_owners(pd: Client) -> None:
    body = pd.get("/v1/users").json()
    assert body["success"] is True
    assert [u["email"] for u in body["data"]] == ["ann@dist.example", "bo@x.io"]


def test_fixture_loading_uses_names_and_labels(clock: FakeClock) -> None:
    app = PipedriveSandbox(clock=clock)
    app.load_fixture({
        "users": [{"name": "Ann", "email": "ann@example.com"}],
        "fields": {"deals": [{"name": "Tier", "type": "enum", "options": ["Gold", "Silver"]}]},
        "organizations": [{"id": 10, "name": "Acme GmbH", "Channel owner": "D-1",
                           "update_time": "2026-03-01T10:00:00Z"}],
        "deals": [{"title": "Pumps", "org_id": 10, "Tier": "Gold", "is_deleted": True}],
    })
    assert app.record_data("organizations", 10)["update_time"] == "2026-03-01T10:00:00Z"
    assert app.company.custom_value("organizations", 10, "Channel owner") == "D-1"
    assert app.company.custom_value("deals", 1, "Tier") == "Gold"
    assert app.record_data("deals", 1)["is_deleted"] is True


# -- limits ----------------------------------------------------------------------------
def test_rate_limit_headers_and_token_costs(pd: Client) -> None:
    first = pd.get("/api/v2/deals")
    remaining = int(first.headers["x-daily-ratelimit-token-remaining"])
    assert first.headers["x-ratelimit-limit"] == "1000"
    assert int(first.headers["x-ratelimit-remaining"]) == 999
    assert first.headers["x-ratelimit-reset"].isdigit()
    costs = {"/api/v2/deals/1": 1, "/api/v2/deals": 10, "/api/v2/dealFields": 10,
             "/v1/users": 20}
    for path, cost in costs.items():
        resp = pd.get(path)
        now = int(resp.headers["x-daily-ratelimit-token-remaining"])
        assert remaining - now == cost, path
        remaining = now
    patched = pd.call("PATCH", "/api/v2/deals/1", json={"title": "New"})
    assert remaining - int(patched.headers["x-daily-ratelimit-token-remaining"]) == 5
    remaining -= 5
    deleted = pd.call("DELETE", "/api/v2/deals/2")
    assert remaining - int(deleted.headers["x-daily-ratelimit-token-remaining"]) == 3


def test_burst_limit_answers_429_until_the_window_rolls(clock: FakeClock, attach: Any) -> None:
    pd = attach(PipedriveSandbox.from_seed(small_seed(), clock=clock, burst_limit=3))
    assert [pd.get("/api/v2/deals/1").status_code for _ in range(3)] == [200] * 3
    limited = pd.get("/api/v2/deals/1")
    assert limited.status_code == 429 and limited.json()["errorCode"] == 429
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["x-ratelimit-reset"]) >= 1
    clock.advance(2.01)
    assert pd.get("/api/v2/deals/1").status_code == 200


def test_exhausted_daily_budget_answers_429_until_midnight(
    clock: FakeClock, attach: Any
) -> None:
    pd = attach(PipedriveSandbox.from_seed(small_seed(), clock=clock, daily_tokens=25))
    assert pd.get("/api/v2/deals").status_code == 200
    assert pd.get("/api/v2/deals").status_code == 200
    spent = pd.get("/api/v2/deals")
    assert spent.status_code == 429
    assert spent.headers["x-daily-ratelimit-token-remaining"] == "5"
    assert pd.get("/api/v2/deals/1").status_code == 200  # 1 token still fits
    for _ in range(3):
        clock.advance(60)
        assert pd.get("/api/v2/deals").status_code == 429
    clock.now = (int(clock.now // 86400) + 1) * 86400 + 1
    fresh = pd.get("/api/v2/deals")
    assert fresh.status_code == 200
    assert fresh.headers["x-daily-ratelimit-token-remaining"] == "15"


def test_injected_faults_use_pipedrive_shapes(pd: Client) -> None:
    pd.app.faults.update({"error_next": 1, "rate_limit_next": 1})
    limited = pd.get("/api/v2/deals")
    assert limited.status_code == 429 and limited.json()["success"] is False
    failed = pd.get("/api/v2/deals")
    assert failed.status_code == 500 and failed.json()["success"] is False
    assert pd.get("/api/v2/deals").status_code == 200
    assert pd.app.requests.count("GET", "/api/v2/deals") == 3


def test_admin_hooks_act_as_a_crm_user(pd: Client, clock: FakeClock) -> None:
    admin = pd.base + "/__sandbox/"
    created = pd.session.post(admin + "records/organizations",
                              json={"fields": {"name": "Admin Org", "Channel owner": "D-3"}})
    org_id = created.json()["id"]
    assert pd.app.company.custom_value("organizations", org_id, "Channel owner") == "D-3"
    clock.advance(7)
    edited = pd.session.patch(admin + f"records/organizations/{org_id}",
                              json={"fields": {"Channel conflict": "Yes"}}).json()
    key = pd.app.field_key("organizations", "Channel conflict")
    assert isinstance(edited["custom_fields"][key], int)
    assert edited["update_time"] > edited["add_time"]
    pd.session.delete(admin + f"records/organizations/{org_id}")
    assert org_id not in _ids(pd.get("/api/v2/organizations").json())
    old_token = pd.app.api_token
    pd.session.post(admin + "rotate_token")
    assert pd.call("GET", "/api/v2/deals", token=old_token).status_code == 401
    pd.session.post(admin + "budget", json={"spent": pd.app.limits.daily_tokens})
    assert pd.get("/api/v2/deals/1").status_code == 429
    assert pd.app.requests.count(route="/__sandbox") == 0  # admin calls are never counted


def test_v1_users_also_accepts_the_legacy_query_token(pd: Client) -> None:
    resp = pd.session.get(pd.base + "/v1/users", params={"api_token": pd.app.api_token})
    assert resp.status_code == 200 and resp.json()["data"][0]["id"] == 1


def test_hammering_through_429s_earns_an_html_403(clock: FakeClock, attach: Any) -> None:
    pd = attach(PipedriveSandbox.from_seed(small_seed(), clock=clock, burst_limit=1,
                                           block_after_429s=3))
    assert pd.get("/api/v2/deals/1").status_code == 200
    assert [pd.get("/api/v2/deals/1").status_code for _ in range(3)] == [429] * 3
    blocked = pd.get("/api/v2/deals/1")
    assert blocked.status_code == 403 and blocked.headers["Content-Type"].startswith("text/html")
    clock.advance(30)
    assert pd.get("/api/v2/deals/1").status_code == 403  # blocked for a while
    clock.advance(31)
    assert pd.get("/api/v2/deals/1").status_code == 200
