"""One sandbox instance is one vendor org/account/company: two instances of the same vendor
never share an identity, a token or a record id."""

from __future__ import annotations

from tests.sandbox.conftest import SF_DATA, SandboxStarter, VendorClient


def test_two_salesforce_orgs_have_their_own_org_and_record_ids(
        start_sandbox: SandboxStarter) -> None:
    first, second = start_sandbox("salesforce"), start_sandbox("salesforce")
    assert first.box.credentials()["org_id"] != second.box.credentials()["org_id"]
    assert first.box.credentials()["org_id"].startswith("00D")
    ids = [{r["Id"] for r in c.call("GET", f"{SF_DATA}/query?q=SELECT+Id+FROM+Account")
            .json()["records"]} for c in (first, second)]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert first.deal_id("D1") != second.deal_id("D1")


def test_two_hubspot_portals_have_their_own_portal_id_and_token(
        start_sandbox: SandboxStarter) -> None:
    first, second = start_sandbox("hubspot"), start_sandbox("hubspot")
    one, two = first.box.credentials(), second.box.credentials()
    assert one["portal_id"] != two["portal_id"]
    assert one["access_token"] != two["access_token"]
    foreign = second.call("GET", "/crm/v3/objects/companies",
                          headers={"Authorization": f"Bearer {one['access_token']}"})
    assert foreign.status_code == 401


def test_two_pipedrive_companies_have_their_own_domain_token_and_field_keys(
        start_sandbox: SandboxStarter) -> None:
    first, second = start_sandbox("pipedrive"), start_sandbox("pipedrive")
    one, two = first.box.credentials(), second.box.credentials()
    assert one["company_domain"] != two["company_domain"]
    assert one["api_token"] != two["api_token"]

    def custom_keys(client: VendorClient) -> dict[str, str]:
        fields = client.call("GET", "/api/v2/dealFields?limit=500").json()["data"]
        return {f["field_name"]: f["field_code"] for f in fields if f["is_custom_field"]}

    keys_one, keys_two = custom_keys(first), custom_keys(second)
    assert keys_one and set(keys_one) == set(keys_two)
    assert all(len(k) == 40 for k in keys_one.values())
    assert not set(keys_one.values()) & set(keys_two.values())


def test_two_dataverse_environments_have_their_own_tenant_and_app(
        start_sandbox: SandboxStarter) -> None:
    first, second = start_sandbox("dynamics"), start_sandbox("dynamics")
    one, two = first.box.credentials(), second.box.credentials()
    assert one["tenant_id"] != two["tenant_id"]
    assert one["client_id"] != two["client_id"]
    assert first.app.organization_id != second.app.organization_id
    foreign = second.call("GET", "/api/data/v9.2/accounts", headers=first.auth)
    assert foreign.status_code == 401
