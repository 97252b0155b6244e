"""An account's matching keys, and :class:`RecordFeatures` holding them for many accounts.

Normalising a name or a website costs about 15 µs, most of a full match's time at a
million accounts, and an account's keys change only when the account does. So the store
keeps each account's keys with the change generation they were made from
(``account_match_key``), and a full evaluation normalises only the accounts changed since
(:meth:`RecordFeatures.from_rows`). :data:`KEYS_VERSION` says which normalisation made a
stored key: change what :class:`KeyMaker` returns and bump it, and every stored key is
made again at the next full evaluation.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from operator import eq
from typing import Any, Final, NamedTuple, Protocol

from rules.names import (
    domain_country,
    duns_key,
    host_of,
    legal_form_countries,
    registrable_host,
    split_name,
    vat_key,
)

KEYS_VERSION: Final = 1


class AccountLike(Protocol):
    """The fields of an account that matching reads (``rules.matching.AccountRecord``)."""

    @property
    def connection(self) -> str: ...
    @property
    def external_id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def domain(self) -> str | None: ...
    @property
    def country(self) -> str | None: ...
    @property
    def duns(self) -> str | None: ...
    @property
    def vat_id(self) -> str | None: ...


class MatchKeys(NamedTuple):
    """One account's normalised evidence, as stored."""

    country: str | None  # given, else read from a country-code domain or a legal form
    duns: str | None
    vat: str | None
    domain: str | None  # registrable domain; free-mail and junk -> None
    name: str  # cleaned name
    legal: str | None  # no country known and the legal form fits several: them, sorted,
    # comma-joined


class KeyMaker:
    """An account's matching keys from its fields, with memos per distinct string (CRMs
    repeat names, websites and countries a lot); one per batch of accounts."""

    def __init__(self) -> None:
        self.names: dict[str, tuple[str, frozenset[str] | None]] = {}
        self.domains: dict[str, str | None] = {}
        self.hosts: dict[str, str | None] = {}
        self.countries: dict[str, str | None] = {}

    def __call__(self, name: str | None, domain: str | None, country: str | None,
                 duns: str | None, vat_id: str | None) -> MatchKeys:
        code = None
        if country:
            code = self.countries.get(country, "")
            if code == "":
                code = self.countries[country] = country.strip().upper() or None
        registrable = None
        if domain:
            registrable = self.domains.get(domain, "")
            if registrable == "":  # one public-suffix lookup per host, not per spelling
                host = host_of(domain)
                registrable = None if host is None else self.hosts.get(host, "")
                if host is not None and registrable == "":
                    registrable = self.hosts[host] = registrable_host(host)
                self.domains[domain] = registrable
        raw = name or ""
        known = self.names.get(raw)
        if known is None:
            cleaned, terms = split_name(raw)
            known = self.names[raw] = (cleaned, legal_form_countries(terms))
        cleaned, legal = known
        # a missing country is read from a country-code web domain (acme.co.uk -> GB)
        # or from a legal form used in one country only (Oy -> FI, K.K. -> JP)
        if not code and registrable:
            code = domain_country(registrable)
        several = None
        if not code and legal:
            if len(legal) == 1:
                code = next(iter(legal))
            else:
                several = ",".join(sorted(legal))
        return MatchKeys(code, duns_key(duns) if duns else None,
                         vat_key(vat_id, code) if vat_id else None, registrable, cleaned,
                         several)


# (account id, change generation, connection, external id, whether its stored keys are
# current, then six values: the stored keys in MatchKeys order when current, else the
# account's name, domain, country, DUNS and VAT id, and None)
KeyedRow = tuple[Any, ...]


def _row_key(row: KeyedRow) -> str:
    return row[2] + "\0" + row[3]


class RecordFeatures:
    """Normalised evidence per record, in parallel lists indexed by record position, in
    (connection, external id) order (sorted as one string joined by NUL, which the store
    never holds: four times as fast as sorting pairs).

    ``made``: the records whose keys were normalised here rather than read from the store
    (:meth:`from_rows` only), as (account id, change generation, position) arrays: what
    :func:`made_keys` hands back to be stored."""

    def __init__(self, records: Iterable[AccountLike] = ()) -> None:
        self.keys: list[tuple[str, str]] = []
        self.legal_countries: dict[int, frozenset[str]] = {}  # only for country-less records
        self.country: list[str | None] = []
        self.duns: list[str | None] = []
        self.vat: list[str | None] = []
        self.domain: list[str | None] = []
        self.name: list[str] = []
        self.compact: list[str] = []
        self.made = (array("q"), array("q"), array("q"))
        self._same: dict[str, str] = {}  # one string object per distinct value (memory)
        self._legal: dict[str, frozenset[str]] = {}
        self._fill(((0, 0, r.connection, r.external_id, 0, r.name, r.domain, r.country,
                     r.duns, r.vat_id, None) for r in records), note_made=False)

    @classmethod
    def from_rows(cls, rows: Iterable[KeyedRow]) -> RecordFeatures:
        """Features of accounts read with their stored keys (the scale path's SQLite
        read): an account whose keys are not current (new, changed since, or made by
        another version) is normalised here and listed in ``made``."""
        features = cls()
        features._fill(rows, note_made=True)
        return features

    @classmethod
    def from_stored(cls, rows: Iterable[Sequence[Any]]) -> RecordFeatures:
        """:meth:`from_rows` of ``Store.account_inputs_and_keys`` rows (every account's
        fields and its stored keys, current or not)."""
        return cls.from_rows(
            (*row[:4], row[9], *(row[10:] if row[9] else (*row[4:9], None))) for row in rows)

    def _fill(self, rows: Iterable[KeyedRow], *, note_made: bool) -> None:
        make = KeyMaker()
        ids, generations, positions = self.made
        legal_countries, legal_sets = self.legal_countries, self._legal
        # one string object per distinct value, as normalising gives (a driver makes a new
        # one per row: a million two-letter countries alone are 50 MB)
        one = self._same.setdefault
        add_key, add_country, add_duns, add_vat, add_domain, add_name, add_compact = (
            self.keys.append, self.country.append, self.duns.append, self.vat.append,
            self.domain.append, self.name.append, self.compact.append)
        for position, (account_id, generation, connection, external_id, current, country,
                       duns, vat, domain, name, legal) in enumerate(
                sorted(rows, key=_row_key)):
            if not current:  # the row holds the account's name, domain, country, DUNS, VAT
                if note_made:
                    ids.append(account_id)
                    generations.append(generation)
                    positions.append(position)
                country, duns, vat, domain, name, legal = make(country, duns, vat, domain, name)
            if legal is not None:
                found = legal_sets.get(legal)
                if found is None:
                    found = legal_sets[legal] = frozenset(legal.split(","))
                legal_countries[position] = found
            add_key((connection, external_id))
            add_country(country and one(country, country))
            add_duns(duns)
            add_vat(vat)
            add_domain(domain)
            name = one(name, name)
            add_name(name)
            compact = name.replace(" ", "")
            add_compact(one(compact, compact))
        keys = self.keys
        if any(map(eq, keys, islice(keys, 1, None))):  # sorted: a repeat is a neighbour
            self._check_unique()

    def _check_unique(self) -> None:
        if len(set(self.keys)) != len(self.keys):
            seen: set[tuple[str, str]] = set()
            dup = next(k for k in self.keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]  # set.add returns None on purpose
            raise ValueError(f"account {dup[0]}/{dup[1]} appears twice in the matching input")

    def stored_keys(self, position: int) -> MatchKeys:
        """The keys of the record at ``position``, as the store keeps them."""
        legal = self.legal_countries.get(position)
        return MatchKeys(self.country[position], self.duns[position], self.vat[position],
                         self.domain[position], self.name[position],
                         None if legal is None else ",".join(sorted(legal)))

    def __getstate__(self) -> dict[str, object]:
        # the memos only serve loading: a worker sends its features back without them
        return {k: v for k, v in self.__dict__.items() if k not in ("_same", "_legal")}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state, _same={}, _legal={})

    @classmethod
    def joined(cls, parts: Sequence[RecordFeatures]) -> RecordFeatures:
        """The features of several batches of records as one, in key order: each part's
        keys must all sort after the previous part's (e.g. normalised in two processes)."""
        whole = cls()
        for part in parts:
            if whole.keys and part.keys and part.keys[0] <= whole.keys[-1]:
                raise ValueError("feature parts overlap or are out of key order")
            offset = len(whole.keys)
            whole.legal_countries.update(
                (offset + i, legal) for i, legal in part.legal_countries.items())
            for name in ("keys", "country", "duns", "vat", "domain", "name", "compact"):
                getattr(whole, name).extend(getattr(part, name))
            for mine, theirs in zip(whole.made[:2], part.made[:2], strict=True):
                mine.extend(theirs)
            whole.made[2].extend(position + offset for position in part.made[2])
        return whole


def made_keys(features: RecordFeatures) -> Iterator[tuple[int, int, MatchKeys]]:
    """(account id, change generation, keys) of each record normalised rather than read."""
    ids, generations, positions = features.made
    for account_id, generation, position in zip(ids, generations, positions, strict=True):
        yield account_id, generation, features.stored_keys(position)
