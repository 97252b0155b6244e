"""``EntityDefinitions`` metadata endpoints of the Dataverse sandbox."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from sandbox.dynamics.odata import ODataError, compile_filter
from sandbox.dynamics.schema import LOOKUP_TYPES, Attribute, TableDef

_EXPAND = re.compile(r"(\w+)(?:\(([^()]*(?:\([^()]*\))?[^()]*)\))?")
_CAST_TYPES = {
    "EnumAttributeMetadata": {"Picklist", "State", "Status", "Boolean"},
    "PicklistAttributeMetadata": {"Picklist"},
    "StateAttributeMetadata": {"State"},
    "StatusAttributeMetadata": {"Status"},
    "BooleanAttributeMetadata": {"Boolean"},
    "LookupAttributeMetadata": set(LOOKUP_TYPES),
    "DateTimeAttributeMetadata": {"DateTime"},
    "StringAttributeMetadata": {"String"},
    "MemoAttributeMetadata": {"Memo"},
    "MoneyAttributeMetadata": {"Money"},
}
_TYPE_NAME = {"Customer": "CustomerType", "Owner": "OwnerType", "Uniqueidentifier":
              "UniqueidentifierType", "BigInt": "BigIntType"}
_META_PROPS = {
    "LogicalName": Attribute("LogicalName", "LogicalName", "String"),
    "SchemaName": Attribute("SchemaName", "SchemaName", "String"),
    "EntitySetName": Attribute("EntitySetName", "EntitySetName", "String"),
    "ChangeTrackingEnabled": Attribute("ChangeTrackingEnabled", "ChangeTrackingEnabled",
                                       "Boolean"),
    "IsCustomEntity": Attribute("IsCustomEntity", "IsCustomEntity", "Boolean"),
}
_METADATA_NS = uuid.UUID("9f0c3b8e-5d2a-4c1e-8f3a-2b6d7e9a1c40")


def _label(text: str) -> dict[str, Any]:
    label = {"Label": text, "LanguageCode": 1033, "IsManaged": False}
    return {"LocalizedLabels": [label], "UserLocalizedLabel": label}


def _metadata_id(*parts: str) -> str:
    return str(uuid.uuid5(_METADATA_NS, "/".join(parts)))


def attribute_id(table: str, attribute: str) -> str:
    """A column's ``MetadataId`` (stable per table and column name)."""
    return _metadata_id(table, attribute)


def parse_select(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def parse_expand(text: str | None) -> dict[str, dict[str, str]]:
    """``Attributes($select=a,b)`` -> {"Attributes": {"$select": "a,b"}}."""
    out: dict[str, dict[str, str]] = {}
    for match in _EXPAND.finditer(text or ""):
        options: dict[str, str] = {}
        for item in (match.group(2) or "").split(";"):
            name, _, value = item.partition("=")
            if name.strip():
                options[name.strip()] = value.strip()
        out[match.group(1)] = options
    return out


def _pick(data: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    if select is None:
        return data
    keep = {k: v for k, v in data.items() if k in select or k.startswith("@")}
    keep["MetadataId"] = data.get("MetadataId")
    return keep


def attribute_metadata(table: TableDef, attr: Attribute, cast: str | None = None,
                       expand: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    type_name = _TYPE_NAME.get(attr.type, f"{attr.type}Type")
    data: dict[str, Any] = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{attr.type}AttributeMetadata",
        "MetadataId": _metadata_id(table.logical, attr.logical),
        "LogicalName": attr.logical,
        "SchemaName": attr.schema,
        "EntityLogicalName": table.logical,
        "AttributeType": attr.type,
        "AttributeTypeName": {"Value": type_name},
        "IsCustomAttribute": attr.custom,
        "IsValidForUpdate": attr.valid_for_update,
        "IsValidForCreate": attr.valid_for_update or attr.logical == table.pk,
        "IsValidForRead": True,
        "IsPrimaryId": attr.logical == table.pk,
        "IsPrimaryName": attr.logical == table.primary_name,
        "DisplayName": _label(attr.display or attr.schema),
    }
    if cast == "LookupAttributeMetadata":
        data["Targets"] = list(attr.targets)
    if cast == "DateTimeAttributeMetadata":
        data["Format"] = "DateOnly" if attr.date_only else "DateAndTime"
    expand = expand or {}
    enum_cast = cast in ("PicklistAttributeMetadata", "StateAttributeMetadata",
                         "StatusAttributeMetadata", "EnumAttributeMetadata")
    if enum_cast and attr.type != "Boolean" and "OptionSet" in expand:
        data["OptionSet"] = {
            "MetadataId": _metadata_id(table.logical, attr.logical, "options"),
            "Name": f"{table.logical}_{attr.logical}",
            "IsGlobal": False,
            "OptionSetType": attr.type,
            "Options": [{"Value": value, "Label": _label(label), "Color": None,
                         "IsManaged": False, "ExternalValue": None}
                        for value, label in attr.options.items()],
        }
    if "GlobalOptionSet" in expand:
        data["GlobalOptionSet"] = None
    if (enum_cast or cast == "BooleanAttributeMetadata") and attr.type == "Boolean" \
            and "OptionSet" in expand:
        data["OptionSet"] = {
            "MetadataId": _metadata_id(table.logical, attr.logical, "options"),
            "OptionSetType": "Boolean",
            "TrueOption": {"Value": 1, "Label": _label(attr.options.get(1, "Yes"))},
            "FalseOption": {"Value": 0, "Label": _label(attr.options.get(0, "No"))},
        }
    return data


def entity_metadata(table: TableDef) -> dict[str, Any]:
    return {
        "MetadataId": _metadata_id(table.logical),
        "LogicalName": table.logical,
        "SchemaName": table.schema,
        "EntitySetName": table.set_name,
        "LogicalCollectionName": table.set_name,
        "PrimaryIdAttribute": table.pk,
        "PrimaryNameAttribute": table.primary_name,
        "ChangeTrackingEnabled": table.change_tracking,
        "IsCustomEntity": False,
        "ObjectTypeCode": {"account": 1, "opportunity": 3, "systemuser": 8}.get(table.logical, 0),
        "DisplayName": _label(table.schema),
    }


class MetadataEndpoints:
    """Mixed into the app: answers the metadata routes from its table definitions."""

    if TYPE_CHECKING:  # provided by the app class; declared for type checking only

        def _table_def(self, logical: str) -> TableDef:
            raise NotImplementedError

        def _all_defs(self) -> list[TableDef]:
            raise NotImplementedError

        def _base(self, request: Request) -> str:
            raise NotImplementedError

        def _reply(self, data: Any, status: int = 200) -> Response:
            raise NotImplementedError

        def _odata_error(self, exc: ODataError) -> Response:
            raise NotImplementedError

    def entity_definitions(self, request: Request) -> Response:
        rows = [entity_metadata(t) for t in self._all_defs()]
        try:
            if request.args.get("$filter"):
                predicate = compile_filter(request.args["$filter"], _META_PROPS,
                                           "EntityMetadata")
                rows = [r for r in rows if predicate(r)]
        except ODataError as exc:
            return self._odata_error(exc)
        select = parse_select(request.args.get("$select"))
        base = self._base(request)
        return self._reply({"@odata.context": f"{base}/$metadata#EntityDefinitions",
                            "value": [_pick(r, select) for r in rows]})

    def entity_definition(self, request: Request, logical: str) -> Response:
        table = self._table_def(logical)
        data = _pick(entity_metadata(table), parse_select(request.args.get("$select")))
        expand = parse_expand(request.args.get("$expand"))
        if "Attributes" in expand:
            attr_select = parse_select(expand["Attributes"].get("$select"))
            data["Attributes"] = [_pick(attribute_metadata(table, a), attr_select)
                                  for a in table.attributes.values()]
        base = self._base(request)
        data["@odata.context"] = f"{base}/$metadata#EntityDefinitions/$entity"
        return self._reply(data)

    def attribute_cast(self, request: Request, logical: str, cast: str,
                       attribute: str | None = None) -> Response:
        table = self._table_def(logical)
        cast_name = cast.removeprefix("Microsoft.Dynamics.CRM.")
        types = _CAST_TYPES.get(cast_name)
        if types is None:
            raise ODataError(f"Resource not found for the segment '{cast}'.", code="0x80060888",
                             status=404)
        select = parse_select(request.args.get("$select"))
        expand = parse_expand(request.args.get("$expand"))
        attrs = [a for a in table.attributes.values() if a.type in types]
        if attribute is not None:
            attrs = [a for a in attrs if a.logical == attribute]
            if not attrs:
                raise ODataError(f"Could not find attribute '{attribute}' of type {cast_name} "
                                 f"on entity '{logical}'.", code="0x80040217", status=404)
        values = []
        for attr in attrs:
            full = attribute_metadata(table, attr, cast_name, expand)
            picked = _pick(full, select)
            for name in expand:
                if name in full:
                    picked[name] = full[name]
            values.append(picked)
        base = self._base(request)
        context = f"{base}/$metadata#EntityDefinitions('{logical}')/Attributes/{cast}"
        if attribute is not None:
            return self._reply({"@odata.context": context + "/$entity", **values[0]})
        return self._reply({"@odata.context": context, "value": values})
