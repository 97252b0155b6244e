"""Dataverse table and column definitions the sandbox serves (account, opportunity, users)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Choice values of the default publisher start at its option-value prefix x 10,000.
PUBLISHER_OPTION_BASE = 100_000_000

LOOKUP_TYPES = frozenset({"Lookup", "Owner", "Customer"})
CHOICE_TYPES = frozenset({"Picklist", "State", "Status"})


@dataclass(slots=True)
class Attribute:
    """One column as ``EntityDefinitions(...)/Attributes`` describes it."""

    logical: str
    schema: str
    type: str  # AttributeType: String, Memo, Integer, Money, Boolean, DateTime, Picklist, ...
    display: str = ""
    custom: bool = False
    valid_for_update: bool = True
    options: dict[int, str] = field(default_factory=dict)  # choice value -> label
    targets: tuple[str, ...] = ()  # lookups: target table logical names
    date_only: bool = False

    @property
    def prop(self) -> str:
        """The Web API property: lookups appear as ``_<logical>_value``."""
        return f"_{self.logical}_value" if self.type in LOOKUP_TYPES else self.logical


@dataclass(slots=True)
class TableDef:
    logical: str
    set_name: str
    schema: str
    pk: str
    primary_name: str
    attributes: dict[str, Attribute]
    change_tracking: bool = True

    def by_prop(self) -> dict[str, Attribute]:
        return {a.prop: a for a in self.attributes.values()}


def _choices(labels: list[str], base: int = PUBLISHER_OPTION_BASE) -> dict[int, str]:
    return {base + i: label for i, label in enumerate(labels)}


REGISTRATION_STATUS_LABELS = [
    "Pending", "Active", "Expiring", "Expired", "Extended", "Released", "Won", "Lost",
]
REGISTRATION_DECISION_LABELS = ["Extend", "Reassign", "Release"]
SALES_STAGES = {0: "Qualify", 1: "Develop", 2: "Propose", 3: "Close"}
OPPORTUNITY_STATES = {0: "Open", 1: "Won", 2: "Lost"}
ACCOUNT_STATES = {0: "Active", 1: "Inactive"}
OPPORTUNITY_STATUSES = {1: "In Progress", 2: "On Hold", 3: "Won", 4: "Canceled", 5: "Out-Sold"}


def _system(table: str) -> list[Attribute]:
    """Columns every user-owned table has."""
    return [
        Attribute("createdon", "CreatedOn", "DateTime", "Created On", valid_for_update=False),
        Attribute("modifiedon", "ModifiedOn", "DateTime", "Modified On", valid_for_update=False),
        Attribute("versionnumber", "VersionNumber", "BigInt", "Version Number",
                  valid_for_update=False),
        Attribute("ownerid", "OwnerId", "Owner", "Owner", targets=("systemuser", "team")),
        Attribute("statecode", "StateCode", "State", "Status",
                  options={0: "Active", 1: "Inactive"} if table == "account"
                  else OPPORTUNITY_STATES),
    ]


def _custom(
    logical: str, kind: str, display: str, *, options: dict[int, str] | None = None,
    targets: tuple[str, ...] = (), date_only: bool = False,
) -> Attribute:
    schema = "new_" + "".join(part.capitalize() for part in display.split())
    return Attribute(logical, schema, kind, display, custom=True, options=options or {},
                     targets=targets, date_only=date_only)


def account_table() -> TableDef:
    attrs = [
        Attribute("accountid", "AccountId", "Uniqueidentifier", "Account", valid_for_update=False),
        Attribute("name", "Name", "String", "Account Name"),
        Attribute("websiteurl", "WebSiteURL", "String", "Website"),
        Attribute("address1_country", "Address1_Country", "String", "Address 1: Country/Region"),
        Attribute("accountnumber", "AccountNumber", "String", "Account Number"),
        Attribute("parentaccountid", "ParentAccountId", "Lookup", "Parent Account",
                  targets=("account",)),
        *_system("account"),
        _custom("new_duns", "String", "DUNS Number"),
        _custom("new_vatid", "String", "VAT ID"),
        _custom("new_channelowner", "String", "Channel Owner"),
        _custom("new_partnerid", "String", "Partner ID"),
        _custom("new_channelconflict", "Boolean", "Channel Conflict",
                options={0: "No", 1: "Yes"}),
        _custom("new_channelconflictreason", "Memo", "Channel Conflict Reason"),
        _custom("new_customerid", "String", "Customer ID"),
    ]
    return TableDef("account", "accounts", "Account", "accountid", "name",
                    {a.logical: a for a in attrs})


def opportunity_table() -> TableDef:
    attrs = [
        Attribute("opportunityid", "OpportunityId", "Uniqueidentifier", "Opportunity",
                  valid_for_update=False),
        Attribute("name", "Name", "String", "Topic"),
        Attribute("parentaccountid", "ParentAccountId", "Lookup", "Account",
                  targets=("account",)),
        Attribute("customerid", "CustomerId", "Customer", "Potential Customer",
                  targets=("account", "contact")),
        Attribute("estimatedvalue", "EstimatedValue", "Money", "Est. Revenue"),
        Attribute("transactioncurrencyid", "TransactionCurrencyId", "Lookup", "Currency",
                  targets=("transactioncurrency",)),
        Attribute("estimatedclosedate", "EstimatedCloseDate", "DateTime", "Est. Close Date",
                  date_only=True),
        Attribute("salesstage", "SalesStage", "Picklist", "Sales Stage", options=SALES_STAGES),
        Attribute("statuscode", "StatusCode", "Status", "Status Reason",
                  options=OPPORTUNITY_STATUSES),
        *_system("opportunity"),
        _custom("new_lastactivityon", "DateTime", "Last Activity On"),
        _custom("new_channelowner", "String", "Channel Owner"),
        _custom("new_registeredby", "String", "Registered By"),
        _custom("new_registeredon", "DateTime", "Registered On"),
        _custom("new_registrationexpireson", "DateTime", "Registration Expires On",
                date_only=True),
        _custom("new_registrationstatus", "Picklist", "Registration Status",
                options=_choices(REGISTRATION_STATUS_LABELS)),
        _custom("new_registrationdecision", "Picklist", "Registration Decision",
                options=_choices(REGISTRATION_DECISION_LABELS)),
        _custom("new_reassignto", "String", "Reassign To"),
        _custom("new_routedto", "String", "Routed To"),
        _custom("new_channelconflict", "Boolean", "Channel Conflict",
                options={0: "No", 1: "Yes"}),
        _custom("new_channelconflictreason", "Memo", "Channel Conflict Reason"),
        _custom("new_partneraccount", "Lookup", "Partner Account", targets=("account",)),
    ]
    table = TableDef("opportunity", "opportunities", "Opportunity", "opportunityid", "name",
                     {a.logical: a for a in attrs})
    table.attributes["new_partneraccount"].schema = "new_PartnerAccount"
    return table


def systemuser_table() -> TableDef:
    attrs = [
        Attribute("systemuserid", "SystemUserId", "Uniqueidentifier", "User",
                  valid_for_update=False),
        Attribute("fullname", "FullName", "String", "Full Name", valid_for_update=False),
        Attribute("internalemailaddress", "InternalEMailAddress", "String", "Primary Email"),
        Attribute("domainname", "DomainName", "String", "User Name"),
        Attribute("applicationid", "ApplicationId", "Uniqueidentifier", "Application ID"),
        Attribute("modifiedon", "ModifiedOn", "DateTime", "Modified On", valid_for_update=False),
        Attribute("versionnumber", "VersionNumber", "BigInt", "Version Number",
                  valid_for_update=False),
    ]
    return TableDef("systemuser", "systemusers", "SystemUser", "systemuserid", "fullname",
                    {a.logical: a for a in attrs}, change_tracking=False)


def currency_table() -> TableDef:
    attrs = [
        Attribute("transactioncurrencyid", "TransactionCurrencyId", "Uniqueidentifier",
                  "Currency", valid_for_update=False),
        Attribute("currencyname", "CurrencyName", "String", "Currency Name"),
        Attribute("isocurrencycode", "ISOCurrencyCode", "String", "Currency Code"),
        Attribute("modifiedon", "ModifiedOn", "DateTime", "Modified On", valid_for_update=False),
        Attribute("versionnumber", "VersionNumber", "BigInt", "Version Number",
                  valid_for_update=False),
    ]
    return TableDef("transactioncurrency", "transactioncurrencies", "TransactionCurrency",
                    "transactioncurrencyid", "currencyname", {a.logical: a for a in attrs},
                    change_tracking=False)


def default_tables() -> list[TableDef]:
    return [account_table(), opportunity_table(), systemuser_table(), currency_table()]


CURRENCY_NAMES = {
    "USD": "US Dollar", "EUR": "Euro", "GBP": "Pound Sterling", "CHF": "Swiss Franc",
    "JPY": "Yen", "CAD": "Canadian Dollar", "AUD": "Australian Dollar", "SEK": "Swedish Krona",
    "NOK": "Norwegian Krone", "DKK": "Danish Krone", "PLN": "Zloty", "CZK": "Czech Koruna",
    "BRL": "Brazilian Real", "MXN": "Mexican Peso", "INR": "Indian Rupee", "CNY": "Yuan Renminbi",
}

COUNTRY_NAMES = {
    "DE": "Germany", "US": "United States", "GB": "United Kingdom", "FR": "France",
    "IT": "Italy", "ES": "Spain", "NL": "Netherlands", "BE": "Belgium", "AT": "Austria",
    "CH": "Switzerland", "SE": "Sweden", "NO": "Norway", "DK": "Denmark", "FI": "Finland",
    "PL": "Poland", "CZ": "Czechia", "PT": "Portugal", "IE": "Ireland", "LU": "Luxembourg",
    "CA": "Canada", "MX": "Mexico", "BR": "Brazil", "JP": "Japan", "CN": "China",
    "IN": "India", "AU": "Australia", "NZ": "New Zealand", "SG": "Singapore",
    "ZA": "South Africa", "TR": "Turkey", "GR": "Greece", "HU": "Hungary", "RO": "Romania",
}
