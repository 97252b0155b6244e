"""``RetrieveMetadataChanges``: one query for table definitions, their columns with the
columns' derived-type details (option sets, date formats, lookup targets), and a version
stamp to ask later only for what changed.

Follows Microsoft's "Query schema definitions", "Cache schema data" and the
``RetrieveMetadataChanges`` function reference (Web API v9.2):

- ``GET RetrieveMetadataChanges(Query=@p1)?@p1=<EntityQueryExpression as JSON>``; optional
  ``ClientVersionStamp`` (``Edm.String``) and ``DeletedMetadataFilters`` (enum flags) parameters,
  given inline or as ``@alias`` values. Without ``Query``, every table comes back.
- ``EntityQueryExpression``: ``Properties`` (``{"AllProperties", "PropertyNames"}``),
  ``Criteria`` (``MetadataFilterExpression``: ``FilterOperator`` And/Or, ``Conditions`` of
  ``{"PropertyName", "ConditionOperator", "Value": {"Type", "Value"}}``, nested ``Filters``),
  ``AttributeQuery`` (same pattern for columns; ``Attributes`` must then be one of the
  entity's properties) and ``LabelQuery`` (``FilterLanguages``).
- The response: ``ServerVersionStamp``, ``DeletedMetadata`` (``Count``, ``IsReadOnly``,
  ``Keys``, ``Values``) and ``EntityMetadata``, a list of ``ComplexEntityMetadata``. Every
  item carries ``MetadataId``, ``LogicalName`` and ``HasChanged``; properties not asked for
  are present with ``null``. Columns are typed with ``@odata.type``
  (``#Microsoft.Dynamics.CRM.ComplexPicklistAttributeMetadata`` ...; none for the base type).
- A criteria matching no table is not an error: ``EntityMetadata`` is empty.
- With ``ClientVersionStamp``, only tables changed since that stamp come back (``HasChanged``
  true for a changed table, false when only something below it changed), and with
  ``DeletedMetadataFilters`` the ids of columns deleted since then. A stamp the service no
  longer tracks answers 400 ``0x80044352`` (ExpiredVersionStamp).

[unverified] the error code of a malformed query (0x80060888, as for other OData syntax
errors here, or 0x80040203 for a query the docs forbid) and the element type of
``DeletedMetadata.Values`` (a list of id lists here).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from sandbox.dynamics.metadata import attribute_metadata, entity_metadata
from sandbox.dynamics.odata import ODataError
from sandbox.dynamics.schema import LOOKUP_TYPES, Attribute, TableDef

EXPIRED_VERSION_STAMP = "0x80044352"
_INVALID_ARGUMENT = "0x80040203"
_ALWAYS = ("MetadataId", "LogicalName", "HasChanged")
_CAST = {"Picklist": "PicklistAttributeMetadata", "State": "StateAttributeMetadata",
         "Status": "StatusAttributeMetadata", "Boolean": "BooleanAttributeMetadata",
         "DateTime": "DateTimeAttributeMetadata",
         **dict.fromkeys(LOOKUP_TYPES, "LookupAttributeMetadata")}
_COMPLEX = {"Lookup": "Lookup", "Owner": "Lookup", "Customer": "Lookup"}  # else the type
_DELETED_FLAGS = {"Default": 1, "Attribute": 2, "Relationship": 4, "Label": 8,
                  "OptionSet": 16, "All": 31}
_PARAM = re.compile(r"\s*(\w+)\s*=\s*('(?:[^']|'')*'|[^,]*)\s*(?:,|$)")
_ENUM_LITERAL = re.compile(r"^(?:Microsoft\.Dynamics\.CRM\.DeletedMetadataFilters)?'([^']*)'$")


@dataclass(slots=True)
class SchemaJournal:
    """Schema changes, versioned, so a later query can ask for what changed since."""

    version: int = 1
    entries: list[tuple[int, str, str, str | None]] = field(default_factory=list)
    expired_before: int = 0  # stamps below this version answer ExpiredVersionStamp

    def record(self, table: str, kind: str, metadata_id: str | None = None) -> None:
        """``kind``: ``entity`` (a table property changed) or ``attribute-deleted``."""
        self.version += 1
        self.entries.append((self.version, table, kind, metadata_id))

    def expire(self) -> None:
        self.expired_before = self.version + 1


def _label_filter(value: Any, languages: list[int] | None) -> Any:
    if languages is None or not isinstance(value, dict) or "LocalizedLabels" not in value:
        return value
    kept = [lb for lb in value["LocalizedLabels"] if lb.get("LanguageCode") in languages]
    user = value.get("UserLocalizedLabel")
    return {"LocalizedLabels": kept, "UserLocalizedLabel": user if user in kept else None}


def complex_attribute(table: TableDef, attr: Attribute) -> dict[str, Any]:
    """A column as ``ComplexAttributeMetadata`` (or the derived type of its column type)."""
    data = attribute_metadata(table, attr, _CAST.get(attr.type), {"OptionSet": {}})
    data.pop("@odata.type")
    if attr.type != "Uniqueidentifier":
        kind = _COMPLEX.get(attr.type, attr.type)
        data = {"@odata.type": f"#Microsoft.Dynamics.CRM.Complex{kind}AttributeMetadata", **data}
    option_set = data.get("OptionSet")
    if option_set is not None:
        option_set["HasChanged"] = None
        for option in option_set.get("Options", []):
            option["HasChanged"] = None
    data["HasChanged"] = None
    return data


class _Query:
    """A validated ``EntityQueryExpression``."""

    def __init__(self, raw: Any) -> None:
        if raw is None:
            raw = {"Properties": {"AllProperties": True}}
        if not isinstance(raw, dict):
            raise ODataError("The Query parameter must be an EntityQueryExpression object.")
        self.entity_props = _properties(raw.get("Properties"), "Properties")
        self.entity_filter = _filter(raw.get("Criteria"), "Criteria")
        attr_query = raw.get("AttributeQuery")
        if attr_query is not None and not isinstance(attr_query, dict):
            raise ODataError("AttributeQuery must be an AttributeQueryExpression object.")
        self.with_attributes = self.entity_props is None or "Attributes" in self.entity_props
        if attr_query is not None and not self.with_attributes:
            raise ODataError("When AttributeQuery is used, 'Attributes' must be one of the "
                             "Properties of the EntityQueryExpression.",
                             code=_INVALID_ARGUMENT)
        attr_query = attr_query or {"Properties": {"AllProperties": True}}
        self.attr_props = _properties(attr_query.get("Properties"), "AttributeQuery.Properties")
        self.attr_filter = _filter(attr_query.get("Criteria"), "AttributeQuery.Criteria")
        labels = raw.get("LabelQuery") or {}
        languages = labels.get("FilterLanguages") if isinstance(labels, dict) else None
        if languages is not None and not (isinstance(languages, list)
                                          and all(isinstance(x, int) for x in languages)):
            raise ODataError("LabelQuery.FilterLanguages must be a list of language codes.")
        self.languages: list[int] | None = languages or None

    def shape(self, full: dict[str, Any], props: set[str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in full.items():
            if key.startswith("@") or key in _ALWAYS or props is None or key in props:
                out[key] = _label_filter(value, self.languages)
            else:
                out[key] = None
        out.setdefault("HasChanged", None)
        return out


def _properties(raw: Any, where: str) -> set[str] | None:
    """The property names asked for; ``None`` means all of them."""
    if raw is None:
        return set()
    if not isinstance(raw, dict):
        raise ODataError(f"{where} must be a MetadataPropertiesExpression object.")
    if raw.get("AllProperties") is True:
        return None
    names = raw.get("PropertyNames") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ODataError(f"{where}.PropertyNames must be a list of property names.")
    return set(names)


def _value(raw: Any, where: str) -> Any:
    if not isinstance(raw, dict) or "Type" not in raw or "Value" not in raw:
        raise ODataError(f"{where}: Value must be an Object with Type and Value.")
    kind, value = raw["Type"], raw["Value"]
    if kind == "System.Boolean":
        if str(value).lower() not in ("true", "false"):
            raise ODataError(f"{where}: '{value}' is not a System.Boolean.")
        return str(value).lower() == "true"
    if kind == "System.Int32":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ODataError(f"{where}: '{value}' is not a System.Int32.") from None
    if kind == "System.String[]":
        if isinstance(value, str):  # the docs' PowerShell sample sends "['a','b']"
            return re.findall(r"'((?:[^']|'')*)'", value)
        if isinstance(value, list):
            return [str(v) for v in value]
        raise ODataError(f"{where}: '{value}' is not a System.String[].")
    if kind in ("System.String", "System.Guid", "Microsoft.Xrm.Sdk.Metadata.AttributeTypeCode",
                "Microsoft.Xrm.Sdk.Metadata.AttributeTypeDisplayName",
                "Microsoft.Xrm.Sdk.Metadata.OwnershipTypes"):
        return str(value)
    raise ODataError(f"{where}: unsupported Type '{kind}'.")


def _prop(item: dict[str, Any], name: str) -> Any:
    value = item.get(name)
    if isinstance(value, dict) and "Value" in value:  # AttributeTypeName, managed properties
        return value["Value"]
    return value


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "NotEquals": lambda a, b: a != b,
    "In": lambda a, b: a in b,
    "NotIn": lambda a, b: a not in b,
    "GreaterThan": lambda a, b: a is not None and a > b,
    "LessThan": lambda a, b: a is not None and a < b,
}


def _condition(name: str, wanted: Any, test: Callable[[Any, Any], bool]
               ) -> Callable[[dict[str, Any]], bool]:
    return lambda item: test(_prop(item, name), wanted)


def _filter(raw: Any, where: str) -> Callable[[dict[str, Any]], bool]:
    if raw is None:
        return lambda _item: True
    if not isinstance(raw, dict):
        raise ODataError(f"{where} must be a MetadataFilterExpression object.")
    operator = raw.get("FilterOperator", "And")
    if operator not in ("And", "Or"):
        raise ODataError(f"{where}.FilterOperator must be And or Or, not '{operator}'.")
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for i, cond in enumerate(raw.get("Conditions") or []):
        spot = f"{where}.Conditions[{i}]"
        if not isinstance(cond, dict) or not isinstance(cond.get("PropertyName"), str):
            raise ODataError(f"{spot}: PropertyName is required.")
        test = _TESTS.get(cond.get("ConditionOperator", ""))
        if test is None:
            raise ODataError(f"{spot}: unknown ConditionOperator "
                             f"'{cond.get('ConditionOperator')}'.")
        name, wanted = cond["PropertyName"], _value(cond.get("Value"), spot)
        if cond["ConditionOperator"] in ("In", "NotIn") and not isinstance(wanted, list):
            wanted = [wanted]
        tests.append(_condition(name, wanted, test))
    for i, sub in enumerate(raw.get("Filters") or []):
        tests.append(_filter(sub, f"{where}.Filters[{i}]"))
    if operator == "Or" and tests:
        return lambda item: any(t(item) for t in tests)
    return lambda item: all(t(item) for t in tests)


def parse_parameters(inline: str | None, args: Any) -> dict[str, str]:
    """``Query=@p1,ClientVersionStamp=@s`` with ``@p1``/``@s`` from the query string."""
    params: dict[str, str] = {}
    text = (inline or "").strip()
    pos = 0
    while pos < len(text):
        match = _PARAM.match(text, pos)
        if match is None or match.end() == pos:
            raise ODataError(f"Syntax error in the parameters of RetrieveMetadataChanges: "
                             f"'{text}'.")
        name, value = match.group(1), match.group(2).strip()
        if value.startswith("@"):
            if value not in args:
                raise ODataError(f"The parameter alias '{value}' has no value.")
            value = args[value]
        params[name] = value
        pos = match.end()
    unknown = set(params) - {"Query", "ClientVersionStamp", "DeletedMetadataFilters",
                             "AppModuleId", "RetrieveAllSettings"}
    if unknown:
        raise ODataError(f"RetrieveMetadataChanges has no parameter "
                         f"'{sorted(unknown)[0]}'.")
    return params


def _string(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def _deleted_filters(value: str | None) -> int:
    if value is None:
        return 0
    match = _ENUM_LITERAL.match(value.strip())
    names = match.group(1) if match else value.strip()
    if names.isdigit():
        return int(names)
    flags = 0
    for name in names.split(","):
        if name.strip() not in _DELETED_FLAGS:
            raise ODataError(f"'{name.strip()}' is not a DeletedMetadataFilters member.")
        flags |= _DELETED_FLAGS[name.strip()]
    return flags


def retrieve_metadata_changes(tables: list[TableDef], journal: SchemaJournal,
                              params: dict[str, str], now: datetime) -> dict[str, Any]:
    """The ``RetrieveMetadataChangesResponse`` body (without ``@odata.context``)."""
    try:
        raw = orjson.loads(params["Query"]) if "Query" in params else None
    except orjson.JSONDecodeError as exc:
        raise ODataError(f"The Query parameter is not valid JSON: {exc}") from None
    query = _Query(raw)
    since: int | None = None
    if "ClientVersionStamp" in params:
        stamp = _string(params["ClientVersionStamp"])
        head = stamp.split("!", 1)[0]
        since = int(head) if head.isdigit() else -1
        if since < journal.expired_before or since > journal.version:
            raise ODataError("Version stamp associated with the client has expired. Please "
                             "perform a full sync.", code=EXPIRED_VERSION_STAMP)
    deleted_flags = _deleted_filters(params.get("DeletedMetadataFilters"))
    changes = [e for e in journal.entries if since is not None and e[0] > since]
    entities = []
    for table in tables:
        full = entity_metadata(table)
        if not query.entity_filter(full):
            continue
        touched = {kind for _, name, kind, _ in changes if name == table.logical}
        if since is not None and "entity" not in touched:
            continue  # nothing of this table changed (a deleted column is in DeletedMetadata)
        item = query.shape(full, query.entity_props)
        if since is not None:
            item["HasChanged"] = True
        item["Attributes"] = None
        if query.with_attributes:
            attrs = [complex_attribute(table, a) for a in table.attributes.values()]
            attrs = [a for a in attrs if query.attr_filter(a)] if since is None else []
            item["Attributes"] = [query.shape(a, query.attr_props) for a in attrs]
        entities.append(item)
    keys, values = [], []
    if since is not None and deleted_flags & _DELETED_FLAGS["Attribute"]:
        ids = [mid for _, _, kind, mid in changes if kind == "attribute-deleted" and mid]
        if ids:
            keys.append("Attribute")
            values.append(ids)
    return {"ServerVersionStamp": f"{journal.version}!{now:%m/%d/%Y %H:%M:%S}",
            "DeletedMetadata": {"Count": len(keys), "IsReadOnly": False, "Keys": keys,
                                "Values": values},
            "EntityMetadata": entities}
