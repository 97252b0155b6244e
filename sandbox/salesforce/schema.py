"""sObject and field definitions of the Salesforce sandbox, and Salesforce ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

NUMERIC_TYPES = frozenset({"currency", "double", "percent", "int"})
TEXT_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "url", "email", "phone", "combobox"}
)
ID_TYPES = frozenset({"id", "reference"})


def id18(id15: str) -> str:
    """Salesforce's case-safe 18-character id: three check characters encode capitals."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        suffix += _SUFFIX_CHARS[bits]
    return id15 + suffix


def normalize_id(value: str) -> str | None:
    """15- or 18-character id as its 18-character form; ``None`` when it is not an id."""
    if len(value) == 18 and value.isalnum():
        return id18(value[:15]) if id18(value[:15]).lower() == value.lower() else None
    if len(value) == 15 and value.isalnum():
        return id18(value)
    return None


def org_pod(serial: int) -> str:
    """Two id characters per org, so two sandbox orgs never hand out the same record id
    (real Salesforce ids are unique across orgs); serial 1 keeps the historical ``Hs``."""
    n = 17 * 62 + 54 + serial - 1  # "Hs" for serial 1
    return ID_CHARS[(n // 62) % 62] + ID_CHARS[n % 62]


def make_id(prefix: str, number: int, pod: str = "Hs") -> str:
    """Ids that sort in creation order: key prefix, the org's two pod characters, base-62
    counter."""
    digits = ""
    n = number
    for _ in range(10):
        n, rem = divmod(n, 62)
        digits = ID_CHARS[rem] + digits
    return id18(prefix + pod + digits)


@dataclass(slots=True)
class FieldDef:
    name: str
    type: str  # id boolean string textarea picklist currency double percent int date datetime ...
    label: str = ""
    custom: bool = False
    updateable: bool = True
    createable: bool = True
    nillable: bool = True
    length: int = 0
    picklist: tuple[str, ...] = ()
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    external_id: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name.removesuffix("__c").replace("_", " "),
            "type": self.type,
            "custom": self.custom,
            "updateable": self.updateable,
            "createable": self.createable,
            "nillable": self.nillable,
            "length": self.length,
            "filterable": self.type != "textarea",
            "sortable": self.type != "textarea",
            "externalId": self.external_id,
            "calculated": False,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                for v in self.picklist
            ],
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
        }


_SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "currency": "xsd:double",
    "double": "xsd:double", "percent": "xsd:double", "int": "xsd:int", "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


@dataclass(slots=True)
class ObjectDef:
    name: str
    key_prefix: str
    label: str
    fields: dict[str, FieldDef] = field(default_factory=dict)
    by_lower: dict[str, FieldDef] = field(default_factory=dict)
    relationships: dict[str, FieldDef] = field(default_factory=dict)  # lower relationship name

    def add(self, fdef: FieldDef) -> None:
        self.fields[fdef.name] = fdef
        self.by_lower[fdef.name.lower()] = fdef
        if fdef.relationship_name:
            self.relationships[fdef.relationship_name.lower()] = fdef

    def remove(self, name: str) -> None:
        fdef = self.by_lower.pop(name.lower(), None)
        if fdef is None:
            raise KeyError(name)
        del self.fields[fdef.name]
        if fdef.relationship_name:
            self.relationships.pop(fdef.relationship_name.lower(), None)

    def describe(self, version: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label + "s",
            "keyPrefix": self.key_prefix,
            "custom": False,
            "queryable": True,
            "updateable": True,
            "deletable": True,
            "replicateable": True,
            "urls": {
                "sobject": f"/services/data/v{version}/sobjects/{self.name}",
                "describe": f"/services/data/v{version}/sobjects/{self.name}/describe",
                "rowTemplate": f"/services/data/v{version}/sobjects/{self.name}/{{ID}}",
            },
            "fields": [f.describe() for f in self.fields.values()],
        }


SYSTEM_FIELDS = frozenset(
    {"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
     "SystemModstamp"}
)

STAGES: dict[str, str] = {  # StageName -> open | won | lost (IsClosed/IsWon follow from it)
    "Prospecting": "open", "Qualification": "open", "Needs Analysis": "open",
    "Proposal/Price Quote": "open", "Negotiation/Review": "open",
    "Closed Won": "won", "Closed Lost": "lost",
}
REGISTRATION_STATUSES = (
    "Pending", "Active", "Expiring", "Expired", "Extended", "Released", "Won", "Lost",
)
DECISIONS = ("Extend", "Reassign", "Release")
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "JPY", "SEK", "NOK", "DKK", "PLN", "CAD", "AUD", "BRL",
              "MXN", "SGD")


def _system(obj: ObjectDef) -> None:
    obj.add(FieldDef("Id", "id", "Record ID", updateable=False, createable=False,
                     nillable=False, length=18))
    obj.add(FieldDef("IsDeleted", "boolean", "Deleted", updateable=False, createable=False,
                     nillable=False))
    obj.add(FieldDef("CreatedDate", "datetime", "Created Date", updateable=False,
                     createable=False, nillable=False))
    obj.add(FieldDef("CreatedById", "reference", "Created By ID", updateable=False,
                     createable=False, nillable=False, reference_to=("User",),
                     relationship_name="CreatedBy", length=18))
    obj.add(FieldDef("LastModifiedDate", "datetime", "Last Modified Date", updateable=False,
                     createable=False, nillable=False))
    obj.add(FieldDef("LastModifiedById", "reference", "Last Modified By ID", updateable=False,
                     createable=False, nillable=False, reference_to=("User",),
                     relationship_name="LastModifiedBy", length=18))
    obj.add(FieldDef("SystemModstamp", "datetime", "System Modstamp", updateable=False,
                     createable=False, nillable=False))


def standard_objects() -> dict[str, ObjectDef]:
    """Account, Opportunity and User with the standard fields a replicating client reads."""
    user = ObjectDef("User", "005", "User")
    _system(user)
    for fdef in (
        FieldDef("Username", "string", "Username", nillable=False, length=80),
        FieldDef("Name", "string", "Full Name", updateable=False, createable=False, length=121),
        FieldDef("Email", "email", "Email", nillable=False, length=80),
        FieldDef("IsActive", "boolean", "Active", nillable=False),
        FieldDef("UserType", "picklist", "User Type", updateable=False,
                 picklist=("Standard", "PowerPartner")),
    ):
        user.add(fdef)

    account = ObjectDef("Account", "001", "Account")
    _system(account)
    for fdef in (
        FieldDef("Name", "string", "Account Name", nillable=False, length=255),
        FieldDef("Type", "picklist", "Account Type",
                 picklist=("Customer - Direct", "Customer - Channel", "Channel Partner / Reseller",
                           "Prospect", "Other")),
        FieldDef("ParentId", "reference", "Parent Account ID", reference_to=("Account",),
                 relationship_name="Parent", length=18),
        FieldDef("Website", "url", "Website", length=255),
        FieldDef("BillingCountry", "string", "Billing Country", length=80),
        FieldDef("DunsNumber", "string", "D-U-N-S Number", length=9),
        FieldDef("IsPartner", "boolean", "Partner Account", nillable=False),
        FieldDef("OwnerId", "reference", "Owner ID", nillable=False, reference_to=("User",),
                 relationship_name="Owner", length=18),
        FieldDef("LastActivityDate", "date", "Last Activity", updateable=False,
                 createable=False),
    ):
        account.add(fdef)

    opportunity = ObjectDef("Opportunity", "006", "Opportunity")
    _system(opportunity)
    for fdef in (
        FieldDef("AccountId", "reference", "Account ID", reference_to=("Account",),
                 relationship_name="Account", length=18),
        FieldDef("Name", "string", "Name", nillable=False, length=120),
        FieldDef("Amount", "currency", "Amount"),
        FieldDef("CurrencyIsoCode", "picklist", "Opportunity Currency", nillable=False,
                 picklist=CURRENCIES, length=3),
        FieldDef("StageName", "picklist", "Stage", nillable=False, picklist=tuple(STAGES)),
        FieldDef("IsClosed", "boolean", "Closed", updateable=False, createable=False,
                 nillable=False),
        FieldDef("IsWon", "boolean", "Won", updateable=False, createable=False, nillable=False),
        FieldDef("CloseDate", "date", "Close Date", nillable=False),
        FieldDef("LastActivityDate", "date", "Last Activity", updateable=False,
                 createable=False),
        FieldDef("OwnerId", "reference", "Owner ID", nillable=False, reference_to=("User",),
                 relationship_name="Owner", length=18),
        FieldDef("PartnerAccountId", "reference", "Partner Account ID", reference_to=("Account",),
                 relationship_name="PartnerAccount", length=18),
    ):
        opportunity.add(fdef)
    return {"User": user, "Account": account, "Opportunity": opportunity}


def channel_custom_fields() -> dict[str, list[FieldDef]]:
    """The custom fields Channel Sync's default mapping uses, per object."""
    return {
        "Account": [
            FieldDef("VAT_Number__c", "string", "VAT Number", custom=True, length=32),
            FieldDef("Distributor_Id__c", "string", "Distributor Id", custom=True, length=40,
                     external_id=True),
            FieldDef("Channel_Owner__c", "string", "Channel Owner", custom=True, length=40),
            FieldDef("Channel_Conflict__c", "boolean", "Channel Conflict", custom=True,
                     nillable=False),
            FieldDef("Channel_Conflict_Reason__c", "string", "Channel Conflict Reason",
                     custom=True, length=255),
            FieldDef("Channel_Customer_Id__c", "string", "Channel Customer Id", custom=True,
                     length=64, external_id=True),
            # a distributor's scorecard headline, on its partner account
            FieldDef("Scorecard_Win_Rate__c", "double", "Registered Win Rate", custom=True),
            FieldDef("Scorecard_Active_Registrations__c", "double", "Active Registrations",
                     custom=True),
            FieldDef("Scorecard_Verdict__c", "picklist", "Scorecard Verdict", custom=True,
                     picklist=("Healthy", "Paper partner", "Insufficient data")),
        ],
        "Opportunity": [
            FieldDef("Partner_Account__c", "reference", "Partner Account", custom=True,
                     reference_to=("Account",), relationship_name="Partner_Account__r",
                     length=18),
            FieldDef("Registered_At__c", "datetime", "Registered At", custom=True),
            FieldDef("Registration_Status__c", "picklist", "Registration Status", custom=True,
                     picklist=REGISTRATION_STATUSES),
            FieldDef("Registration_Expires__c", "date", "Registration Expires", custom=True),
            FieldDef("Registration_Decision__c", "picklist", "Registration Decision",
                     custom=True, picklist=DECISIONS),
            FieldDef("Reassign_To__c", "string", "Reassign To", custom=True, length=40),
            FieldDef("Channel_Owner__c", "string", "Channel Owner", custom=True, length=40),
            FieldDef("Channel_Conflict__c", "boolean", "Channel Conflict", custom=True,
                     nillable=False),
            FieldDef("Channel_Conflict_Reason__c", "string", "Channel Conflict Reason",
                     custom=True, length=255),
            FieldDef("Routed_To__c", "string", "Routed To", custom=True, length=80),
        ],
    }
