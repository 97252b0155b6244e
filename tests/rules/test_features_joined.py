"""Features normalised in key-ordered parts and joined are the features of the whole."""

from __future__ import annotations

import pytest

from rules.features import RecordFeatures
from rules.matching import AccountRecord, MatchSettings, match_accounts, match_features

RECORDS = [
    AccountRecord("crm-a", "1", "Acme GmbH", "https://acme.de", "DE", "123456789", None),
    AccountRecord("crm-a", "2", "Nordlicht Oy", None, None, None, "FI12345678"),
    AccountRecord("crm-b", "7", "ACME", "shop.acme.de", None, None, None),
    AccountRecord("crm-b", "8", "Globex Corp.", "globex.com", "US", None, None),
    AccountRecord("crm-c", "3", "Acme G.m.b.H.", None, "DE", "12-345-6789", None),
    AccountRecord("crm-c", "4", "Tallinn AS", None, None, None, None),
]
FIELDS = ("keys", "country", "duns", "vat", "domain", "name", "compact", "legal_countries")


def test_parts_joined_in_key_order_equal_the_whole() -> None:
    whole = RecordFeatures(RECORDS)
    low = [r for r in RECORDS if r.connection < "crm-b"]
    high = [r for r in RECORDS if r.connection >= "crm-b"]
    joined = RecordFeatures.joined([RecordFeatures(low), RecordFeatures([]),
                                    RecordFeatures(high[::-1])])
    for name in FIELDS:
        assert getattr(joined, name) == getattr(whole, name), name
    assert max(whole.legal_countries) >= len(low)  # a position the join had to shift
    settings = MatchSettings()
    assert match_features(joined, settings=settings) == match_accounts(RECORDS, settings=settings)


def test_parts_out_of_key_order_are_refused() -> None:
    low = RecordFeatures([r for r in RECORDS if r.connection < "crm-b"])
    high = RecordFeatures([r for r in RECORDS if r.connection >= "crm-b"])
    with pytest.raises(ValueError, match="order"):
        RecordFeatures.joined([high, low])
