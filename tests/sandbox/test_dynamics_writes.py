"""The Dataverse sandbox's writes: upserting PATCH, If-Match concurrency, @odata.bind,
choice validation, validation-rule rejections and ``$batch`` with change sets."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import requests

from sandbox.core import Rejection
from sandbox.dynamics import DynamicsApp
from tests.sandbox.test_dynamics import Started, certificate, env, start, tls

__all__ = ["certificate", "env", "start", "tls"]  # fixtures shared with the read tests


def _etag(app: DynamicsApp, table: str, record_id: str) -> str:
    row = app.get_record(table, record_id)
    assert row is not None
    return f'W/"{row["versionnumber"]}"'


def test_patch_without_if_match_upserts(env: Started) -> None:
    app, session, api = env
    new_id = str(uuid.uuid4())
    answer = session.patch(f"{api}accounts({new_id})", json={"name": "Created by PATCH"})
    assert answer.status_code == 204
    assert answer.headers["OData-EntityId"].endswith(f"accounts({new_id})")
    assert app.get_record("account", new_id)["name"] == "Created by PATCH"  # type: ignore[index]  # created above


def test_if_match_star_is_update_only(env: Started) -> None:
    app, session, api = env
    missing = str(uuid.uuid4())
    answer = session.patch(f"{api}accounts({missing})", json={"name": "x"},
                           headers={"If-Match": "*"})
    assert answer.status_code == 404
    assert answer.json()["error"] == {
        "code": "0x80040217", "message": f"account With Id = {missing} Does Not Exist"}
    assert app.get_record("account", missing) is None


def test_every_write_bumps_version_and_modifiedon(env: Started) -> None:
    app, session, api = env
    from datetime import UTC, datetime
    record = app.create_record("account", {"name": "a"},
                               modified_at=datetime(2026, 1, 1, tzinfo=UTC))
    before = app.get_record("account", record)
    assert before is not None
    answer = session.patch(f"{api}accounts({record})", json={"new_channelconflict": True},
                           headers={"If-Match": _etag(app, "account", record)})
    assert answer.status_code == 204
    after = app.get_record("account", record)
    assert after is not None
    assert after["versionnumber"] > before["versionnumber"]
    assert after["modifiedon"] > before["modifiedon"]
    assert after["new_channelconflict"] is True


def test_stale_etag_is_412(env: Started) -> None:
    app, session, api = env
    record = app.create_record("account", {"name": "a"})
    stale = _etag(app, "account", record)
    app.update_record("account", record, {"name": "edited by a user"})
    answer = session.patch(f"{api}accounts({record})", json={"name": "ours"},
                           headers={"If-Match": stale})
    assert answer.status_code == 412
    assert answer.json()["error"]["code"] == "0x80060882"
    assert app.get_record("account", record)["name"] == "edited by a user"  # type: ignore[index]  # exists


def test_lookups_are_bound_with_schema_name_casing(env: Started) -> None:
    app, session, api = env
    account = app.create_record("account", {"name": "Partner"})
    deal = app.create_record("opportunity", {"name": "Deal"})
    user = app.create_record("systemuser", {"fullname": "Bob"})
    answer = session.patch(f"{api}opportunities({deal})", headers={"If-Match": "*"}, json={
        "new_PartnerAccount@odata.bind": f"/accounts({account})",
        "ownerid@odata.bind": f"/systemusers({user})",
        "parentaccountid@odata.bind": f"accounts({account})"})
    assert answer.status_code == 204, answer.text
    row = app.get_record("opportunity", deal)
    assert row is not None
    assert row["_new_partneraccount_value"] == account and row["_ownerid_value"] == user
    assert row["_parentaccountid_value"] == account
    lower = session.patch(f"{api}opportunities({deal})", headers={"If-Match": "*"},
                          json={"new_partneraccount@odata.bind": f"/accounts({account})"})
    assert lower.status_code == 400 and "undeclared property" in lower.json()["error"]["message"]
    raw = session.patch(f"{api}opportunities({deal})", headers={"If-Match": "*"},
                        json={"_parentaccountid_value": account})
    assert raw.status_code == 400


def test_choices_are_integers(env: Started) -> None:
    app, session, api = env
    deal = app.create_record("opportunity", {"name": "Deal"})
    good = session.patch(f"{api}opportunities({deal})", headers={"If-Match": "*"},
                         json={"new_registrationstatus": 100000003})
    assert good.status_code == 204
    label = session.patch(f"{api}opportunities({deal})", headers={"If-Match": "*"},
                          json={"new_registrationstatus": "Expired"})
    assert label.status_code == 400
    out_of_range = session.patch(f"{api}opportunities({deal})", headers={"If-Match": "*"},
                                 json={"new_registrationstatus": 7})
    assert out_of_range.status_code == 400
    assert out_of_range.json()["error"]["code"] == "0x8004431A"


def test_validation_rule_rejects_chosen_records(env: Started) -> None:
    app, session, api = env
    deal = app.create_record("opportunity", {"name": "Deal"})
    app.faults.rejections = [Rejection(object="opportunity", ids=[deal], message="Blocked")]
    answer = session.patch(f"{api}opportunities({deal})", headers={"If-Match": "*"},
                           json={"new_routedto": "dist-9"})
    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": "0x80040265", "message": "Blocked"}


def batch_body(parts: list[tuple[str, str, dict[str, str], Any]], changeset: bool = False
               ) -> tuple[bytes, str]:
    boundary, inner = "batch_abc", "changeset_def"

    def part(method: str, url: str, headers: dict[str, str], body: Any, n: int) -> str:
        lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
        if changeset:
            lines.append(f"Content-ID: {n}")
        lines += ["", f"{method} {url} HTTP/1.1", "Content-Type: application/json"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["", json.dumps(body) if body is not None else ""]
        return "\r\n".join(lines)

    rendered = [part(*p, n) for n, p in enumerate(parts, 1)]
    if changeset:
        inner_text = "".join(f"--{inner}\r\n{r}\r\n" for r in rendered) + f"--{inner}--\r\n"
        text = (f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={inner}\r\n\r\n"
                f"{inner_text}--{boundary}--\r\n")
    else:
        text = "".join(f"--{boundary}\r\n{r}\r\n" for r in rendered) + f"--{boundary}--\r\n"
    return text.encode(), f"multipart/mixed; boundary={boundary}"


def statuses(answer: requests.Response) -> list[int]:
    return [int(line.split()[1]) for line in answer.text.splitlines()
            if line.startswith("HTTP/1.1 ")]


def _three(app: DynamicsApp) -> list[str]:
    return [app.create_record("opportunity", {"name": f"d{i}"}) for i in range(3)]


def test_batch_continue_on_error_reports_each_part(env: Started) -> None:
    app, session, api = env
    ids = _three(app)
    stale = _etag(app, "opportunity", ids[1])
    app.update_record("opportunity", ids[1], {"name": "user edit"})
    parts = [("PATCH", f"{api}opportunities({i})",
              {"If-Match": stale if i == ids[1] else _etag(app, "opportunity", i)},
              {"new_routedto": "dist-2"}) for i in ids]
    body, content_type = batch_body(parts)
    answer = session.post(f"{api}$batch", data=body, headers={
        "Content-Type": content_type, "Prefer": "odata.continue-on-error"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert statuses(answer) == [204, 412, 204]
    assert "0x80060882" in answer.text
    assert [app.get_record("opportunity", i)["new_routedto"] for i in ids] == [  # type: ignore[index]  # rows exist
        "dist-2", None, "dist-2"]


def test_batch_stops_at_first_error_without_continue_on_error(env: Started) -> None:
    app, session, api = env
    ids = _three(app)
    parts = [("PATCH", f"opportunities({i})", {"If-Match": 'W/"1"' if n == 0 else "*"},
              {"new_routedto": "x"}) for n, i in enumerate(ids)]
    body, content_type = batch_body(parts)
    answer = session.post(f"{api}$batch", data=body, headers={"Content-Type": content_type})
    assert statuses(answer) == [412]
    assert all(app.get_record("opportunity", i)["new_routedto"] is None for i in ids)  # type: ignore[index]  # rows exist


def test_change_set_is_all_or_nothing(env: Started) -> None:
    app, session, api = env
    ids = _three(app)
    parts = [("PATCH", f"/api/data/v9.2/opportunities({i})", {"If-Match": "*"},
              {"new_registrationstatus": 100000001 if n < 2 else 5}) for n, i in enumerate(ids)]
    body, content_type = batch_body(parts, changeset=True)
    failed = session.post(f"{api}$batch", data=body, headers={"Content-Type": content_type})
    assert statuses(failed) == [400]
    assert all(app.get_record("opportunity", i)["new_registrationstatus"] is None for i in ids)  # type: ignore[index]  # rows exist

    parts[2] = (*parts[2][:3], {"new_registrationstatus": 100000002})
    body, content_type = batch_body(parts, changeset=True)
    ok = session.post(f"{api}$batch", data=body, headers={"Content-Type": content_type})
    assert statuses(ok) == [204, 204, 204]
    assert "changesetresponse_" in ok.text


def test_batch_get_parts_and_operation_limit(env: Started) -> None:
    app, session, api = env
    [record] = _three(app)[:1]
    body, content_type = batch_body([("GET", f"opportunities({record})?$select=name", {}, None)])
    answer = session.post(f"{api}$batch", data=body, headers={"Content-Type": content_type})
    assert statuses(answer) == [200] and '"name":"d0"' in answer.text
    many = [("PATCH", f"opportunities({record})", {"If-Match": "*"}, {"name": "n"})] * 1001
    body, content_type = batch_body(many)
    too_many = session.post(f"{api}$batch", data=body, headers={"Content-Type": content_type})
    assert too_many.status_code == 400
    assert "1000" in too_many.json()["error"]["message"]


def test_batch_operations_count_against_service_protection(
        start: Callable[..., Started]) -> None:
    app, session, api = start(request_limit=5)
    ids = _three(app)
    parts = [("PATCH", f"opportunities({i})", {"If-Match": "*"}, {"name": "n"}) for i in ids]
    body, content_type = batch_body(parts)
    assert session.post(f"{api}$batch", data=body,
                        headers={"Content-Type": content_type}).status_code == 200
    again = session.post(f"{api}$batch", data=body, headers={"Content-Type": content_type})
    assert again.status_code == 429 and again.json()["error"]["code"] == "0x80072322"
