"""Native per-vendor fixtures through the real CLI: ``main.py sandbox serve --fixture FILE``
serves exactly the records of ``sandbox/examples/native-fixture.yaml`` (and its faults)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.http import make_session
from sandbox.cli import serve_command

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "sandbox" / "examples" / "native-fixture.yaml"
ACME_DV = "5f0c3a62-1d7e-4c0f-9a51-1d2b3c4d5e6f"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """``channelsync sandbox serve --fixture <example> --json`` in a child process."""
    home = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "CHANNELSYNC_SANDBOX_TLS_DIR": str(home / "tls")}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "sandbox", "serve", "--json",
         "--fixture", str(EXAMPLE)],
        cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    printed = []
    for line in proc.stdout:  # the JSON block ends with a closing brace in column one
        printed.append(line)
        if line.rstrip() == "}":
            break
    try:
        described = json.loads("".join(printed))
        yield {s["connection"]: s for s in described["sandboxes"]}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def _session(box: dict[str, Any]) -> requests.Session:
    if box["ca_file"]:
        assert Path(box["ca_file"]).is_absolute()  # usable from any directory
        return make_session(ca_bundle=box["ca_file"])
    return requests.Session()


def test_salesforce_records_and_references(served: dict[str, dict[str, Any]]) -> None:
    box = served["sf-direct"]
    http = _session(box)
    http.headers["Authorization"] = f"Bearer {box['credentials']['session_id']}"
    answer = http.get(f"{box['base_url']}/services/data/v66.0/query", timeout=10, params={
        "q": "SELECT Name, Account.Name, Partner_Account__r.Distributor_Id__c, "
             "Registration_Status__c FROM Opportunity"})
    [row] = answer.json()["records"]
    assert row["Name"] == "Acme pumps 2027" and row["Account"]["Name"] == "Acme GmbH"
    assert row["Partner_Account__r"]["Distributor_Id__c"] == "dist-northwind"
    assert row["Registration_Status__c"] == "Active"
    account = http.get(f"{box['base_url']}/services/data/v66.0/query", timeout=10, params={
        "q": "SELECT SystemModstamp FROM Account WHERE Name = 'Acme GmbH'"}).json()
    assert account["records"][0]["SystemModstamp"].startswith("2026-02-01T10:00:00")


def test_hubspot_records_and_association(served: dict[str, dict[str, Any]]) -> None:
    box = served["hs-northwind"]
    headers = {"Authorization": f"Bearer {box['credentials']['access_token']}"}
    deal = requests.get(f"{box['base_url']}/crm/v3/objects/deals/301", headers=headers,
                        params={"associations": "companies", "properties": "dealname,amount"},
                        timeout=10).json()
    assert deal["properties"]["dealname"] == "Acme pumps"
    assert deal["properties"]["amount"] == "45000"
    assert {a["id"] for a in deal["associations"]["companies"]["results"]} == {"201"}
    assert deal["updatedAt"].startswith("2026-03-03T08:00:00")


def test_pipedrive_records_and_start_faults(served: dict[str, dict[str, Any]]) -> None:
    box = served["pd-alpine"]
    headers = {"x-api-token": box["credentials"]["api_token"]}
    deals = requests.get(f"{box['base_url']}/api/v2/deals", headers=headers, timeout=10).json()
    assert [(d["id"], d["title"], d["org_id"]) for d in deals["data"]] == [
        (7, "Acme pumps (Alpine)", 10)]
    rejected = requests.patch(f"{box['base_url']}/api/v2/deals/7", headers=headers,
                              json={"title": "x"}, timeout=10)
    assert rejected.status_code == 400 and rejected.json()["error"] == "Deal is locked"


def test_dataverse_records_and_lookup(served: dict[str, dict[str, Any]]) -> None:
    box = served["d365-emea"]
    creds = box["credentials"]
    http = _session(box)
    token = http.post(f"{creds['authority']}/oauth2/v2.0/token", timeout=10, data={
        "client_id": creds["client_id"], "client_secret": creds["client_secret"],
        "grant_type": "client_credentials", "scope": creds["scope"]}).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    rows = http.get(f"{creds['api_url']}opportunities", timeout=10,
                    params={"$select": "name,_parentaccountid_value"}).json()["value"]
    assert [(r["name"], r["_parentaccountid_value"]) for r in rows] == [
        ("Acme service contract", ACME_DV)]
    account = http.get(f"{creds['api_url']}accounts({ACME_DV})", timeout=10,
                       params={"$select": "name,modifiedon"}).json()
    assert account["name"] == "Acme GmbH" and account["modifiedon"].startswith("2026-03-01")


def test_faults_for_an_unknown_connection_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixture = tmp_path / "bad.yaml"
    fixture.write_text("sandboxes:\n  - {connection: pd-x, vendor: pipedrive, native: {}}\n"
                       "faults: {pd-y: {error_rate: 1.0}}\n")
    assert serve_command(None, 1, 10, fixture, True, tls_dir=tmp_path / "tls") == 2
    assert "pd-y" in capsys.readouterr().out
