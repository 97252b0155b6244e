"""Normalisation of company names, web domains and registry ids for customer matching.

Pure functions (:mod:`rules.features` applies them to accounts). Legal forms come from
cleanco's term list (plus a few spellings it lacks), registrable domains from tldextract's
bundled public-suffix snapshot (never the network).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

import tldextract
from cleanco.clean import get_unique_terms
from cleanco.termdata import terms_by_country

_EXTRACT: Final = tldextract.TLDExtract(
    suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
)

# Free-mail providers: a domain lifted from a personal address says nothing about a company.
FREE_MAIL_LABELS: Final = frozenset({
    "gmail", "googlemail", "hotmail", "outlook", "live", "msn", "yahoo", "ymail", "aol",
    "gmx", "icloud", "protonmail", "yandex", "rocketmail", "zoho",
})
FREE_MAIL_DOMAINS: Final = frozenset({
    "web.de", "t-online.de", "freenet.de", "arcor.de", "posteo.de", "mailbox.org", "me.com",
    "mac.com", "proton.me", "mail.com", "mail.ru", "orange.fr", "wanadoo.fr", "free.fr",
    "laposte.net", "sfr.fr", "libero.it", "virgilio.it", "qq.com", "163.com", "126.com",
    "naver.com", "seznam.cz", "wp.pl", "o2.pl", "bluewin.ch", "btinternet.com", "sky.com",
    "virginmedia.com", "comcast.net", "verizon.net", "att.net", "fastmail.com",
    "tutanota.com", "hushmail.com", "rediffmail.com", "bigpond.com", "telenet.be",
    "skynet.be", "ziggo.nl", "kpnmail.nl", "hetnet.nl", "telia.com", "online.no",
})

_FOLD: Final = str.maketrans({
    "ø": "o", "ß": "ss", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "þ": "th", "\u0131": "i",
    "&": " and ", "+": " and ", "'": "", "\u2019": "", "`": "", ".": "",
})
_NOT_ALNUM: Final = re.compile(r"[^0-9a-z]+")
_NOT_DIGIT: Final = re.compile(r"[^0-9]+")
# Spellings cleanco lacks or that folding splits differently ("Ges.m.b.H.", "(publ)").
_EXTRA_LEGAL_TERMS: Final = (
    "pty", "pty ltd", "pty limited", "aktiebolag", "osakeyhtio", "kabushiki kaisha",
    "gesmbh", "publ", "dac", "ltda", "sa de cv", "slu", "co ltd", "sarl", "incorporated",
    "corporation", "limited", "company", "ag",
)
_SYNONYMS: Final = {
    "intl": "international", "svcs": "services", "svc": "services", "mfg": "manufacturing",
    "eng": "engineering", "und": "and", "et": "and",
}


_SYNONYM_WORDS: Final = frozenset(_SYNONYMS)


def _fold_words(text: str) -> list[str]:
    text = text.casefold().translate(_FOLD)
    if not text.isascii():
        text = "".join(
            c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
        )
    return _NOT_ALNUM.sub(" ", text).split()


def fold(text: str) -> str:
    """Lower case, accents and punctuation removed, ``&`` spelled ``and``; single spaces."""
    return " ".join(_fold_words(text))


def _legal_terms() -> tuple[frozenset[tuple[str, ...]], int]:
    terms = {tuple(fold(t).split()) for t in (*get_unique_terms(), *_EXTRA_LEGAL_TERMS)}
    terms.discard(())
    return frozenset(terms), max(len(t) for t in terms)


_LEGAL_TERMS, _LONGEST_TERM = _legal_terms()
# last word -> legal terms ending with it, longest first: one lookup for most names
_TERMS_BY_LAST_WORD: Final = {
    last: sorted((t for t in _LEGAL_TERMS if t[-1] == last), key=lambda t: (-len(t), t))
    for last in {t[-1] for t in _LEGAL_TERMS}
}

_ISO_OF_CLEANCO_COUNTRY: Final = {
    "Albania": "AL", "Argentina": "AR", "Australia": "AU", "Austria": "AT", "Belarus": "BY",
    "Belgium": "BE", "Bosnia / Herzegovina": "BA", "Brazil": "BR", "Bulgaria": "BG",
    "Cambodia": "KH", "Canada": "CA", "Chile": "CL", "Columbia": "CO", "Croatia": "HR",
    "Czech Republic": "CZ", "Denmark": "DK", "Dominican Republic": "DO", "Ecuador": "EC",
    "Egypt": "EG", "Estonia": "EE", "Finland": "FI", "France": "FR", "Germany": "DE",
    "Greece": "GR", "Guatemala": "GT", "Haiti": "HT", "Hong Kong": "HK", "Hungary": "HU",
    "Iceland": "IS", "India": "IN", "Indonesia": "ID", "Ireland": "IE", "Israel": "IL",
    "Italy": "IT", "Japan": "JP", "Latvia": "LV", "Lebanon": "LB", "Lithuania": "LT",
    "Luxemborg": "LU", "Macedonia": "MK", "Malaysia": "MY", "Mexico": "MX", "Mongolia": "MN",
    "Netherlands": "NL", "New Zealand": "NZ", "Nigeria": "NG", "Norway": "NO", "Oman": "OM",
    "Pakistan": "PK", "Peru": "PE", "Philippines": "PH", "Poland": "PL", "Portugal": "PT",
    "Romania": "RO", "Russia": "RU", "Serbia": "RS", "Singapore": "SG", "Slovenia": "SI",
    "Slovakia": "SK", "Spain": "ES", "Sweden": "SE", "Switzerland": "CH", "Turkey": "TR",
    "Ukraine": "UA", "United Kingdom": "GB", "United States of America": "US",
    "Uzbekistan": "UZ",
}


# Legal forms cleanco's country table leaves out for some countries where they exist.
_MORE_TERM_COUNTRIES: Final = {
    "gmbh": ("AT",), "ag": ("AT", "LI"), "sa": ("FR", "BE"), "sarl": ("FR", "LU", "CH"),
    "sas": ("FR",), "inc": ("CA",), "corp": ("CA",), "ltd": ("CA", "IE", "AU"),
    "limited": ("GB", "IE", "AU", "CA"), "nv": ("BE",), "bv": ("BE",), "as": ("NO", "DK"),
    "aps": ("DK",), "co ltd": ("JP", "CN", "KR", "TH", "TW"), "ltda": ("BR",), "sl": ("ES",),
    "srl": ("IT", "RO"), "plc": ("GB", "IE"), "dac": ("IE",), "pte ltd": ("SG",),
    "oyj": ("FI",), "asa": ("NO",), "llc": ("US",), "sa de cv": ("MX",), "spa": ("IT",),
    "kabushiki kaisha": ("JP",), "aktiebolag": ("SE",), "osakeyhtio": ("FI",),
    "gesmbh": ("AT",), "pty limited": ("AU",), "incorporated": ("CA",), "a s": ("NO", "DK"),
}


def _term_countries() -> dict[tuple[str, ...], frozenset[str]]:
    found: dict[tuple[str, ...], set[str]] = {
        tuple(term.split()): set(isos) for term, isos in _MORE_TERM_COUNTRIES.items()
    }
    for country, terms in terms_by_country.items():
        iso = _ISO_OF_CLEANCO_COUNTRY.get(country)
        for term in terms:
            if iso:
                found.setdefault(tuple(fold(term).split()), set()).add(iso)
    return {term: frozenset(isos) for term, isos in found.items()}


_TERM_COUNTRIES: Final = _term_countries()


def split_name(name: str) -> tuple[str, tuple[tuple[str, ...], ...]]:
    """The cleaned name and the legal-form terms stripped from its end (outermost first)."""
    tokens = _fold_words(name)
    if not _SYNONYM_WORDS.isdisjoint(tokens):
        tokens = [_SYNONYMS.get(t, t) for t in tokens]
    if len(tokens) > 1 and tokens[0] == "the":
        del tokens[0]
    stripped: list[tuple[str, ...]] = []
    while len(tokens) > 1:
        for term in _TERMS_BY_LAST_WORD.get(tokens[-1], ()):
            size = len(term)
            if size < len(tokens) and tuple(tokens[-size:]) == term:
                stripped.append(term)
                del tokens[-size:]
                break
        else:
            break
    return " ".join(tokens), tuple(stripped)


def clean_name(name: str) -> str:
    """The name people would recognise: legal forms and a leading "the" dropped, folded.

    ``"ACME Corp."``, ``"Acme Corporation"`` and ``"acme, Inc"`` all give ``"acme"``;
    ``"Müller & Söhne GmbH & Co. KG"`` gives ``"muller and sohne"``. A name made only of a
    legal form keeps it rather than becoming empty.
    """
    return split_name(name)[0]


def legal_form_countries(terms: tuple[tuple[str, ...], ...]) -> frozenset[str] | None:
    """Countries whose legal forms include every stripped term (cleanco's table); None when
    the terms say nothing about the country."""
    countries: frozenset[str] | None = None
    for term in terms:
        found = _TERM_COUNTRIES.get(term)
        if found is not None:
            countries = found if countries is None else countries & found
    return countries


def host_of(value: str) -> str | None:
    """The host of a website, bare host or e-mail address, without ``www.``."""
    text = value.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    text = text.rsplit("@", 1)[-1].split(":", 1)[0].strip(".")
    if not text or " " in text:
        return None
    return text.removeprefix("www.")


# tldextract's bundled public-suffix list, for a fast exact-rule lookup; wildcard and
# exception rules, IP addresses and international names go through tldextract itself.
_SUFFIXES: Final = frozenset(t for t in _EXTRACT.tlds if t[0] not in "*!")
_SPECIAL_BASES: Final = frozenset(t.lstrip("*!").lstrip(".") for t in _EXTRACT.tlds
                                  if t[0] in "*!")


def _split_registrable(host: str) -> tuple[str, str]:
    """(domain label, public suffix) of ``host``; empty strings when there is none."""
    labels = host.split(".")
    if host.isascii() and "xn--" not in host and not labels[-1].isdigit():
        for start in range(len(labels)):  # longest candidate first; the host itself too
            candidate = ".".join(labels[start:])
            if candidate in _SPECIAL_BASES:
                break  # a wildcard or exception rule applies: let tldextract decide
            if candidate in _SUFFIXES:
                return (labels[start - 1] if start else ""), candidate
        else:
            return "", ""
    parts = _EXTRACT(host)
    return parts.domain, parts.suffix


def registrable_host(host: str) -> str | None:
    """``"shop.acme.co.uk"`` -> ``"acme.co.uk"``; free-mail, IPs and unknown suffixes -> None."""
    label, suffix = _split_registrable(host)
    if not label or not suffix:
        return None  # an IP address, "localhost" or an unknown suffix
    if label in FREE_MAIL_LABELS:
        return None
    domain = f"{label}.{suffix}"
    return None if domain in FREE_MAIL_DOMAINS else domain


def registrable_domain(value: str) -> str | None:
    """``"https://shop.acme.co.uk/en"`` -> ``"acme.co.uk"``; free-mail and junk -> None.

    Accepts a website, a bare host or an e-mail address.
    """
    host = host_of(value)
    return registrable_host(host) if host else None


# Country-code domains people register for their brand, not their country.
_VANITY_CC: Final = frozenset({"io", "co", "me", "tv", "ai", "ly", "fm", "am", "to", "ws", "cc",
                               "gg", "so", "sh", "ac", "vc", "eu"})


def domain_country(domain: str) -> str | None:
    """ISO country of a country-code domain (``acme.co.uk`` -> ``GB``), else None."""
    tld = domain.rsplit(".", 1)[-1]
    if len(tld) != 2 or not tld.isalpha() or tld in _VANITY_CC:
        return None
    return "GB" if tld == "uk" else tld.upper()


def duns_key(value: str | None) -> str | None:
    """Nine DUNS digits (``"12-345-6789"`` -> ``"123456789"``); placeholders -> None."""
    if not value:
        return None
    digits = _NOT_DIGIT.sub("", value)
    if len(digits) == 13:  # DUNS+4: the last four digits name a site, not the company
        digits = digits[:9]
    if len(digits) != 9 or len(set(digits)) == 1:
        return None
    return digits


_VAT_COUNTRY_PREFIX: Final = {"GR": "EL", "AT": "ATU", "CH": "CHE"}


def vat_key(value: str | None, country: str | None) -> str | None:
    """Upper-case VAT/tax id with its country prefix (added from the record's country)."""
    if not value:
        return None
    text = _NOT_ALNUM.sub("", value.lower()).upper()
    for tail in ("MWST", "TVA", "IVA"):  # Swiss UID suffixes
        text = text.removesuffix(tail)
    if len(text) < 5 or len(set(text)) == 1:
        return None
    if text[:2].isalpha():
        return text
    if country:
        return _VAT_COUNTRY_PREFIX.get(country.upper(), country.upper()) + text
    return text


def fuzzy_blocks(name: str) -> tuple[str, str]:
    """The two fuzzy blocks of a cleaned name (within its country): its first word, and the
    first two letters of every word (typos rarely hit a word's first letters)."""
    tokens = name.split()
    return "w:" + tokens[0], "i:" + "".join(t[:2] for t in tokens)


def unrelated_domains(a: str, b: str) -> bool:
    """acme.de, acme-group.com and acmegroup.co.uk are related; acme.de and acne.de are not."""
    if a == b:
        return False
    la, lb = a.split(".", 1)[0].replace("-", ""), b.split(".", 1)[0].replace("-", "")
    return not (len(la) >= 4 and len(lb) >= 4 and (la in lb or lb in la))
