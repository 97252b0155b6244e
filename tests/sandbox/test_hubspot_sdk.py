"""Every HubSpot sandbox response deserializes into hubspot-api-client's models: the SDK
itself, pointed at the sandbox with ``host=``, is the client here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.companies import ApiClient as CompaniesApiClient
from hubspot.crm.companies import ApiException
from hubspot.crm.deals import (
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
)

from sandbox.hubspot import HubSpotSandbox
from sandbox.serving import RunningSandbox, serve
from tests.sandbox.test_hubspot import small_seed, stop_soon


@pytest.fixture(scope="module")
def sdk() -> Iterator[tuple[HubSpot, HubSpotSandbox, RunningSandbox]]:
    app = HubSpotSandbox.from_seed(small_seed(), search_per_second=None)
    running = serve(app)
    try:
        yield HubSpot(access_token=app.token, host=running.base_url), app, running
    finally:
        stop_soon(running)


def test_list_get_and_archived_list(sdk: tuple[HubSpot, HubSpotSandbox, Any]) -> None:
    client, app, _ = sdk
    page = client.crm.companies.basic_api.get_page(limit=3, properties=["name", "country"])
    assert len(page.results) == 3 and page.paging.next.after
    assert page.results[0].properties["country"] == "Germany"
    assert page.results[0].updated_at.year == 2026
    deals = client.crm.deals.basic_api.get_page(limit=2, associations=["companies"])
    assert deals.results[0].associations["companies"].results[0].id
    one = client.crm.deals.basic_api.get_by_id(deals.results[0].id, properties=["amount"])
    assert one.properties["amount"] == "1250.50"
    victim = page.results[2].id
    app.account.archive("companies", victim)
    archived = client.crm.companies.basic_api.get_page(archived=True)
    assert [r.id for r in archived.results] == [victim]
    assert archived.results[0].archived and archived.results[0].archived_at is not None
    everything = client.crm.companies.get_all()
    assert len(everything) == 29


def test_search_models(sdk: tuple[HubSpot, HubSpotSandbox, Any]) -> None:
    client, _, _ = sdk
    request = PublicObjectSearchRequest(
        filter_groups=[{"filters": [
            {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}]}],
        sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        properties=["dealname"], limit=200,
    )
    result = client.crm.deals.search_api.do_search(public_object_search_request=request)
    assert result.total == 45 and len(result.results) == 45
    assert result.results[0].properties["dealname"] == "Pumps 0"


def test_batch_models_200_and_207(sdk: tuple[HubSpot, HubSpotSandbox, Any]) -> None:
    client, _, _ = sdk
    ids = [r.id for r in client.crm.deals.basic_api.get_page(limit=2).results]
    read = client.crm.deals.batch_api.read(BatchReadInputSimplePublicObjectId(
        inputs=[{"id": ids[0]}, {"id": "404"}], properties=["dealname"],
        properties_with_history=[]))
    assert read.status == "COMPLETE" and read.errors[0].context["ids"] == ["404"]
    update = client.crm.deals.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=[
        {"id": ids[0], "properties": {"channel_conflict": "true"}},
        {"id": ids[1], "properties": {"nope": "x"}, "objectWriteTraceId": "w1"},
    ]))
    assert [r.id for r in update.results] == [ids[0]]
    assert update.errors[0].context["objectWriteTraceId"] == ["w1"]
    assert update.num_errors == 1


def test_metadata_models(sdk: tuple[HubSpot, HubSpotSandbox, Any]) -> None:
    client, _, _ = sdk
    props = client.crm.properties.core_api.get_all("companies").results
    by_name = {p.name: p for p in props}
    assert by_name["vat_id"].hubspot_defined is False
    assert by_name["hs_lastmodifieddate"].modification_metadata.read_only_value is True
    assert client.crm.properties.core_api.get_by_name("deals", "dealstage").type == "enumeration"
    owners = client.crm.owners.owners_api.get_page()
    assert owners.results[0].email == "ann@dist-a.example"
    pipelines = client.crm.pipelines.pipelines_api.get_all("deals")
    assert pipelines.results[0].stages[-1].id == "closedlost"


def test_v4_association_models(sdk: tuple[HubSpot, HubSpotSandbox, Any]) -> None:
    client, _, _ = sdk
    deal = client.crm.deals.basic_api.get_page(limit=1).results[0].id
    per_record = client.crm.associations.v4.basic_api.get_page("deals", deal, "companies")
    assert per_record.results[0].association_types[0].type_id == 5
    batch = client.crm.associations.v4.batch_api.get_page(
        "deals", "companies",
        BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": deal}, {"id": "9"}]))
    assert batch.results[0]._from.id == deal and batch.num_errors == 1
    labels = client.crm.associations.v4.schema.definitions_api.get_all("deals", "companies")
    assert {label.type_id for label in labels.results} == {5, 341}


def test_error_bodies_deserialize_as_hubspot_errors(
    sdk: tuple[HubSpot, HubSpotSandbox, Any],
) -> None:
    client, _, running = sdk
    with pytest.raises(ApiException) as missing:
        client.crm.companies.basic_api.get_by_id("1")
    bad = HubSpot(access_token="pat-na1-nope", host=running.base_url)
    with pytest.raises(ApiException) as unauthorized:
        bad.crm.companies.basic_api.get_page()
    for exc, status in ((missing.value, 404), (unauthorized.value, 401)):
        assert exc.status == status

        class Raw:
            data = exc.body

        error = CompaniesApiClient().deserialize(Raw(), "Error")
        assert error.category and error.correlation_id and error.message
        assert json.loads(exc.body)["status"] == "error"
