"""Normalisation of names, domains and registry ids used by matching."""

from __future__ import annotations

import pytest

from rules.names import (
    _EXTRACT,
    FREE_MAIL_DOMAINS,
    FREE_MAIL_LABELS,
    clean_name,
    domain_country,
    duns_key,
    legal_form_countries,
    registrable_domain,
    registrable_host,
    split_name,
    vat_key,
)


@pytest.mark.parametrize(("raw", "cleaned"), [
    ("ACME Corp.", "acme"),
    ("Acme Corporation", "acme"),
    ("acme, Inc", "acme"),
    ("The Acme Company", "acme"),
    ("Müller & Söhne GmbH & Co. KG", "muller and sohne"),
    ("Sørensen Marine A/S", "sorensen marine"),
    ("Nyström AB (publ)", "nystrom"),
    ("Tanaka Seiki Co., Ltd.", "tanaka seiki"),
    ("Tanaka Seiki K.K.", "tanaka seiki"),
    ("Rossi S.p.A.", "rossi"),
    ("Foo Pty. Ltd.", "foo"),
    ("Vel-Marix B.V.", "vel marix"),
    ("ABC Int'l", "abc international"),
    ("AG", "ag"),
])
def test_clean_name(raw: str, cleaned: str) -> None:
    assert clean_name(raw) == cleaned


def test_legal_forms_hint_at_countries() -> None:
    assert legal_form_countries(split_name("Virtanen Oy")[1]) == {"FI"}
    assert legal_form_countries(split_name("Kestrel K.K.")[1]) == {"JP"}
    assert "DE" in (legal_form_countries(split_name("Weber GmbH")[1]) or ())
    assert legal_form_countries(split_name("Weber")[1]) is None


@pytest.mark.parametrize(("value", "domain"), [
    ("https://www.shop.acme.co.uk/en?x=1", "acme.co.uk"),
    ("WWW.Acme.DE:8443/", "acme.de"),
    ("sales@acme.com.au", "acme.com.au"),
    ("acme.myshopify.com", "acme.myshopify.com"),  # a private suffix: each shop is its own
    ("bergen.no", None),  # itself a public suffix
    ("gmail.com", None),
    ("someone@hotmail.co.uk", None),
    ("web.de", None),
    ("http://127.0.0.1/", None),
    ("not a website", None),
])
def test_registrable_domain(value: str, domain: str | None) -> None:
    assert registrable_domain(value) == domain


@pytest.mark.parametrize("host", [
    "a.b.compute.amazonaws.com", "www.ck", "x.ck", "foo.xn--p1ai", "bücher.de",
    "x.y.city.kawasaki.jp", "a.bergen.no", "shop.acme.com.br", "acme.blogspot.co.uk",
])
def test_fast_suffix_lookup_agrees_with_tldextract(host: str) -> None:
    parts = _EXTRACT(host)
    expected = None
    if parts.domain and parts.suffix and parts.domain not in FREE_MAIL_LABELS:
        expected = f"{parts.domain}.{parts.suffix}"
        expected = None if expected in FREE_MAIL_DOMAINS else expected
    assert registrable_host(host) == expected


def test_registry_ids() -> None:
    assert duns_key("12-345-6789") == "123456789"
    assert duns_key("1234567890001") == "123456789"
    assert duns_key("000000000") is None and duns_key("12345") is None
    assert vat_key("DE 123 456 789", None) == "DE123456789"
    assert vat_key("123456789", "FR") == "FR123456789"
    assert vat_key("CHE-123.456.789 MWST", "CH") == "CHE123456789"
    assert domain_country("acme.co.uk") == "GB"
    assert domain_country("acme.io") is None and domain_country("acme.com") is None
