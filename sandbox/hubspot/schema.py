"""HubSpot property definitions, deal pipelines and the value rules the sandbox enforces."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

OBJECT_ALIASES: dict[str, str] = {
    "companies": "companies", "company": "companies", "0-2": "companies",
    "deals": "deals", "deal": "deals", "0-3": "deals",
}
SINGULAR: dict[str, str] = {"companies": "COMPANY", "deals": "DEAL"}

# Always present in results, whatever ``properties`` asked for (as HubSpot does).
ALWAYS_RETURNED = ("createdate", "hs_lastmodifieddate", "hs_object_id")
DEFAULT_RETURNED: dict[str, tuple[str, ...]] = {
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "deals": (
        "amount", "closedate", "createdate", "dealname", "dealstage",
        "hs_lastmodifieddate", "hs_object_id", "pipeline",
    ),
}
SYSTEM_PROPERTIES = frozenset(ALWAYS_RETURNED)


@dataclass(slots=True)
class PropertyDef:
    """One HubSpot property as the properties API describes it."""

    name: str
    label: str
    type: str  # string, number, date, datetime, enumeration, bool
    field_type: str  # text, textarea, number, date, select, booleancheckbox, calculation_*
    group: str
    options: list[tuple[str, str]] = field(default_factory=list)  # (label, value)
    hubspot_defined: bool = True
    read_only: bool = False
    calculated: bool = False
    description: str = ""
    display_order: int = -1
    created_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        stamp = iso_ms(self.created_ms)
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group,
            "options": [
                {"label": label, "value": value, "displayOrder": i, "hidden": False}
                for i, (label, value) in enumerate(self.options)
            ],
            "displayOrder": self.display_order,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": self.name == "hs_object_id",
            "hidden": False,
            "hubspotDefined": self.hubspot_defined,
            "showCurrencySymbol": self.name == "amount",
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only or self.calculated,
            },
            "formField": not self.read_only,
            "createdAt": stamp,
            "updatedAt": stamp,
            "archived": False,
        }


def _p(name: str, label: str, type_: str, field_type: str, group: str, **kw: Any) -> PropertyDef:
    return PropertyDef(name, label, type_, field_type, group, **kw)


def _ro(name: str, label: str, type_: str, group: str) -> PropertyDef:
    return PropertyDef(name, label, type_, "text" if type_ == "string" else type_, group,
                       read_only=True)


BOOL_OPTIONS = [("Yes", "true"), ("No", "false")]
STAGES: list[tuple[str, str, bool, str]] = [  # id, label, closed, probability
    ("appointmentscheduled", "Appointment Scheduled", False, "0.2"),
    ("qualifiedtobuy", "Qualified To Buy", False, "0.4"),
    ("presentationscheduled", "Presentation Scheduled", False, "0.6"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", False, "0.8"),
    ("contractsent", "Contract Sent", False, "0.9"),
    ("closedwon", "Closed Won", True, "1.0"),
    ("closedlost", "Closed Lost", True, "0.0"),
]
OPEN_STAGES = [s[0] for s in STAGES if not s[2]]
CURRENCIES = ["EUR", "USD", "GBP", "CHF", "SEK", "PLN", "JPY", "CAD", "AUD"]
REGISTRATION_STATES = [
    ("Pending", "pending"), ("Active", "active"), ("Expiring", "expiring"),
    ("Expired", "expired"), ("Extended", "extended"), ("Released", "released"),
    ("Won", "won"), ("Lost", "lost"),
]
DECISIONS = [("Extend", "extend"), ("Reassign", "reassign"), ("Release", "release")]


def default_properties(obj: str, owner_options: list[tuple[str, str]]) -> list[PropertyDef]:
    """HubSpot-defined properties the connector relies on, plus the channel custom fields
    the default mapping (config/mappings/hubspot.yaml) reads and writes."""
    common = [
        _ro("hs_object_id", "Record ID", "number", "companyinformation"),
        _ro("createdate", "Create Date", "datetime", "companyinformation"),
        _ro("hs_lastmodifieddate", "Last Modified Date", "datetime", "companyinformation"),
        _p("hubspot_owner_id", "Owner", "enumeration", "select", "companyinformation",
           options=owner_options),
    ]
    channel = [
        _p("channel_owner", "Channel owner", "string", "text", "channel", hubspot_defined=False),
        _p("channel_conflict", "Channel conflict", "bool", "booleancheckbox", "channel",
           options=BOOL_OPTIONS, hubspot_defined=False),
        _p("channel_conflict_reason", "Channel conflict reason", "string", "textarea",
           "channel", hubspot_defined=False),
    ]
    if obj == "companies":
        group = "companyinformation"
        return [*common, *channel,
            _p("name", "Company name", "string", "text", group),
            _p("domain", "Company Domain Name", "string", "text", group),
            _p("website", "Website URL", "string", "text", group),
            _p("country", "Country/Region", "string", "text", group),
            _p("city", "City", "string", "text", group),
            _p("industry", "Industry", "string", "text", group),
            _p("duns_number", "DUNS number", "string", "text", "channel", hubspot_defined=False),
            _p("vat_id", "VAT ID", "string", "text", "channel", hubspot_defined=False),
            _p("partner_id", "Partner ID", "string", "text", "channel", hubspot_defined=False),
            _p("channel_customer_id", "Channel customer ID", "string", "text", "channel",
               hubspot_defined=False),
            PropertyDef("num_associated_deals", "Number of Associated Deals", "number",
                        "calculation_rollup", group, calculated=True),
        ]
    group = "dealinformation"
    return [*common, *channel,
        _p("dealname", "Deal Name", "string", "text", group),
        _p("amount", "Amount", "number", "number", group),
        _p("deal_currency_code", "Currency", "enumeration", "select", group,
           options=[(c, c) for c in CURRENCIES]),
        _p("dealstage", "Deal Stage", "enumeration", "radio", group,
           options=[(label, sid) for sid, label, _, _ in STAGES]),
        _p("pipeline", "Pipeline", "enumeration", "select", group,
           options=[("Sales Pipeline", "default")]),
        _p("closedate", "Close Date", "datetime", "date", group),
        _ro("notes_last_updated", "Last Activity Date", "datetime", group),
        _p("registered_by", "Registered by partner", "string", "text", "channel",
           hubspot_defined=False),
        _p("registration_date", "Registration date", "datetime", "date", "channel",
           hubspot_defined=False),
        _p("registration_expiry_date", "Registration expiry date", "date", "date", "channel",
           hubspot_defined=False),
        _p("registration_status", "Registration status", "enumeration", "select", "channel",
           options=list(REGISTRATION_STATES), hubspot_defined=False),
        _p("registration_decision", "Registration decision", "enumeration", "select",
           "channel", options=list(DECISIONS), hubspot_defined=False),
        _p("reassign_to", "Reassign to partner", "string", "text", "channel",
           hubspot_defined=False),
        _p("routed_to_partner", "Routed to partner", "string", "text", "channel",
           hubspot_defined=False),
        PropertyDef("hs_is_closed", "Is Deal Closed?", "bool", "calculation_equation", group,
                    options=BOOL_OPTIONS, calculated=True),
    ]


# -- time and value encoding ----------------------------------------------------------

@lru_cache(maxsize=4096)
def _day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")


def iso_ms(ms: int) -> str:
    """Epoch milliseconds -> the ISO 8601 form HubSpot returns (``...T12:00:00.123Z``).
    Hot path of every page served: the date part is cached, the time part is arithmetic."""
    day, rest = divmod(ms, 86_400_000)
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def to_ms(value: Any) -> int | None:
    """Epoch ms from epoch ms (number or digits) or an ISO date/datetime; None if neither."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class PropertyValueError(Exception):
    """A property value HubSpot would refuse; ``code`` is HubSpot's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def normalise_value(prop: PropertyDef, value: Any) -> str | None:
    """The stored form of a written value (all HubSpot values are strings); empty clears."""
    if value is None or value == "":
        return None
    if isinstance(value, dict | list):
        raise PropertyValueError("INVALID_VALUE", f"{value!r} is not a valid value for {prop.name}")
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if prop.type == "number":
        try:
            float(text)
        except ValueError:
            raise PropertyValueError("INVALID_DECIMAL", f"{text!r} is not a valid number") from None
        return text
    if prop.type == "bool":
        low = text.lower()
        if low not in ("true", "false"):
            raise PropertyValueError("INVALID_BOOLEAN", f"{text!r} is not a valid boolean")
        return low
    if prop.type in ("date", "datetime"):
        ms = to_ms(text)
        if ms is None:
            raise PropertyValueError("INVALID_DATE", f"{text!r} is not a valid {prop.type}")
        if prop.type == "date":
            if ms % 86_400_000:
                raise PropertyValueError("INVALID_DATE", f"{text!r} is not midnight UTC")
            return iso_ms(ms)[:10]
        return iso_ms(ms)
    if prop.type == "enumeration" and prop.options:
        allowed = {v for _, v in prop.options}
        parts = text.split(";") if prop.field_type == "checkbox" else [text]
        bad = [p for p in parts if p not in allowed]
        if bad:
            raise PropertyValueError(
                "INVALID_OPTION",
                f"{bad[0]!r} was not one of the allowed options: {sorted(allowed)}",
            )
    return text
