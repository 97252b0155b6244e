"""``RetrieveMetadataChanges`` of the Dataverse sandbox, in the shapes of Microsoft's "Query
schema definitions" and "Cache schema data" articles."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests

from tests.sandbox.test_dynamics import Started, certificate, start, tls  # noqa: F401  # fixtures


@pytest.fixture
def dv(request: pytest.FixtureRequest) -> Started:
    """A served sandbox with an authorised session (``start`` of the sandbox tests)."""
    started: Started = request.getfixturevalue("start")()
    return started


def _condition(prop: str, value: Any, kind: str = "System.String", op: str = "Equals"
               ) -> dict[str, Any]:
    return {"ConditionOperator": op, "PropertyName": prop,
            "Value": {"Type": kind, "Value": value}}


def _query(logical: str = "opportunity", *, entity_props: list[str] | None = None,
           attr_props: list[str] | None = None, attr_conditions: list[Any] | None = None
           ) -> dict[str, Any]:
    query: dict[str, Any] = {
        "Properties": {"AllProperties": False,
                       "PropertyNames": entity_props or ["EntitySetName", "Attributes"]},
        "Criteria": {"FilterOperator": "And", "Conditions": [_condition("LogicalName", logical)]},
        "LabelQuery": {"FilterLanguages": [1033], "MissingLabelBehavior": 0},
    }
    if attr_props is not None:
        query["AttributeQuery"] = {
            "Properties": {"AllProperties": False, "PropertyNames": attr_props},
            "Criteria": {"FilterOperator": "And", "Conditions": attr_conditions or []}}
    return query


def _get(session: requests.Session, api: str, query: Any, extra: str = "",
         **aliases: str) -> requests.Response:
    text = query if isinstance(query, str) else orjson.dumps(query).decode()
    return session.get(f"{api}RetrieveMetadataChanges(Query=@p1{extra})",
                       params={"@p1": text, **aliases})


def test_one_call_returns_the_table_its_columns_and_their_option_sets(dv: Started) -> None:
    _, session, api = dv
    answer = _get(session, api, _query(
        entity_props=["EntitySetName", "PrimaryIdAttribute", "ChangeTrackingEnabled",
                      "Attributes"],
        attr_props=["AttributeType", "SchemaName", "IsValidForUpdate", "OptionSet", "Format"]))
    assert answer.status_code == 200
    body = answer.json()
    assert body["@odata.context"].endswith(
        "$metadata#Microsoft.Dynamics.CRM.RetrieveMetadataChangesResponse")
    assert body["ServerVersionStamp"].split("!")[0].isdigit()
    assert body["DeletedMetadata"]["Count"] == 0
    [table] = body["EntityMetadata"]
    assert table["LogicalName"] == "opportunity" and table["EntitySetName"] == "opportunities"
    assert table["PrimaryIdAttribute"] == "opportunityid" and table["ChangeTrackingEnabled"]
    assert table["HasChanged"] is None and table["MetadataId"]
    assert table["SchemaName"] is None  # present, but null: not asked for
    attrs = {a["LogicalName"]: a for a in table["Attributes"]}
    status = attrs["new_registrationstatus"]
    assert status["@odata.type"] == "#Microsoft.Dynamics.CRM.ComplexPicklistAttributeMetadata"
    assert status["AttributeType"] == "Picklist" and status["IsCustomAttribute"] is None
    labels = {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"]
              for o in status["OptionSet"]["Options"]}
    assert labels[100000000] == "Pending" and labels[100000001] == "Active"
    assert attrs["statecode"]["OptionSet"]["Options"][0]["Value"] == 0
    assert attrs["estimatedclosedate"]["Format"] == "DateOnly"
    assert attrs["parentaccountid"]["@odata.type"] \
        == "#Microsoft.Dynamics.CRM.ComplexLookupAttributeMetadata"
    assert "@odata.type" not in attrs["opportunityid"]  # the base ComplexAttributeMetadata
    assert attrs["modifiedon"]["IsValidForUpdate"] is False


def test_boolean_option_set_and_attribute_criteria(dv: Started) -> None:
    _, session, api = dv
    body = _get(session, api, _query(
        "account", attr_props=["OptionSet"],
        attr_conditions=[_condition("AttributeTypeName", "BooleanType",
                                    "Microsoft.Xrm.Sdk.Metadata.AttributeTypeDisplayName")],
    )).json()
    [table] = body["EntityMetadata"]
    [conflict] = table["Attributes"]
    assert conflict["LogicalName"] == "new_channelconflict"
    assert conflict["OptionSet"]["TrueOption"]["Value"] == 1
    assert conflict["OptionSet"]["FalseOption"]["Label"]["UserLocalizedLabel"]["Label"] == "No"


def test_or_criteria_span_tables_and_without_attributes_none_come_back(dv: Started) -> None:
    _, session, api = dv
    query = _query(entity_props=["SchemaName"])
    query["Criteria"] = {"FilterOperator": "Or", "Conditions": [
        _condition("LogicalName", "account"), _condition("LogicalName", "opportunity")]}
    body = _get(session, api, query).json()
    assert {e["SchemaName"] for e in body["EntityMetadata"]} == {"Account", "Opportunity"}
    assert all(e["Attributes"] is None for e in body["EntityMetadata"])
    tracked = _get(session, api, {
        "Properties": {"PropertyNames": ["SchemaName"]},
        "Criteria": {"Conditions": [_condition("ChangeTrackingEnabled", "true",
                                               "System.Boolean")]}}).json()
    assert {e["LogicalName"] for e in tracked["EntityMetadata"]} == {"account", "opportunity"}


def test_unknown_table_is_an_empty_result_not_an_error(dv: Started) -> None:
    _, session, api = dv
    answer = _get(session, api, _query("nosuchtable", attr_props=["AttributeType"]))
    assert answer.status_code == 200 and answer.json()["EntityMetadata"] == []


def test_malformed_queries_are_refused(dv: Started) -> None:
    _, session, api = dv
    broken = _get(session, api, '{"Criteria": ')
    assert broken.status_code == 400 and broken.json()["error"]["code"].startswith("0x")
    bad_operator = _query()
    bad_operator["Criteria"]["Conditions"][0]["ConditionOperator"] = "Like"
    assert _get(session, api, bad_operator).status_code == 400
    no_attributes = _query(entity_props=["EntitySetName"], attr_props=["AttributeType"])
    refused = _get(session, api, no_attributes)
    assert refused.status_code == 400 and "Attributes" in refused.json()["error"]["message"]
    missing_alias = session.get(f"{api}RetrieveMetadataChanges(Query=@p1)")
    assert missing_alias.status_code == 400
    unknown_param = session.get(f"{api}RetrieveMetadataChanges(Nonsense=@p1)",
                                params={"@p1": "{}"})
    assert unknown_param.status_code == 400


def test_client_version_stamp_returns_only_changes_and_deleted_columns(dv: Started) -> None:
    app, session, api = dv
    query = _query("account", entity_props=["ChangeTrackingEnabled", "Attributes"],
                   attr_props=["AttributeType"])
    first = _get(session, api, query).json()
    stamp = first["ServerVersionStamp"]
    dropped = next(a["MetadataId"] for a in first["EntityMetadata"][0]["Attributes"]
                   if a["LogicalName"] == "new_vatid")
    changes = ",ClientVersionStamp=@s,DeletedMetadataFilters=@d"
    filters = "Microsoft.Dynamics.CRM.DeletedMetadataFilters'Attribute'"
    same = _get(session, api, query, changes, **{"@s": f"'{stamp}'", "@d": filters}).json()
    assert same["EntityMetadata"] == [] and same["DeletedMetadata"]["Count"] == 0
    assert same["ServerVersionStamp"].split("!")[0] == stamp.split("!")[0]

    app.drop_attribute("account", "new_vatid")
    deleted = _get(session, api, query, changes, **{"@s": f"'{stamp}'", "@d": filters}).json()
    assert deleted["EntityMetadata"] == []  # the table itself did not change
    assert deleted["DeletedMetadata"]["Keys"] == ["Attribute"]
    assert deleted["DeletedMetadata"]["Values"] == [[dropped]]
    unfiltered = _get(session, api, query, ",ClientVersionStamp=@s", **{"@s": f"'{stamp}'"})
    assert unfiltered.json()["DeletedMetadata"]["Count"] == 0  # only with the filter

    app.set_change_tracking("account", False)
    changed = _get(session, api, query, changes,
                   **{"@s": f"'{deleted['ServerVersionStamp']}'", "@d": filters}).json()
    [table] = changed["EntityMetadata"]
    assert table["HasChanged"] is True and table["ChangeTrackingEnabled"] is False


def test_expired_version_stamp(dv: Started) -> None:
    app, session, api = dv
    stamp = _get(session, api, _query()).json()["ServerVersionStamp"]
    app.schema_journal.expire()
    expired = _get(session, api, _query(), ",ClientVersionStamp=@s", **{"@s": f"'{stamp}'"})
    assert expired.status_code == 400
    assert expired.json()["error"]["code"] == "0x80044352"
    garbage = _get(session, api, _query(), ",ClientVersionStamp=@s", **{"@s": "'nonsense'"})
    assert garbage.json()["error"]["code"] == "0x80044352"
    assert _get(session, api, _query()).status_code == 200  # a query without it still works


def test_entity_definitions_still_answer(dv: Started) -> None:
    _, session, api = dv
    body = session.get(f"{api}EntityDefinitions(LogicalName='account')",
                       params={"$select": "EntitySetName"}).json()
    assert body["EntitySetName"] == "accounts"
