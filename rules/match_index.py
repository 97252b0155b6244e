"""Incremental customer matching: keep the clusters between cycles, re-match only what changed.

A change can only move the records it shares evidence with, so :meth:`MatchIndex.update`
gathers the changed records, every record sharing a DUNS, VAT id, domain or cleaned name
with them (before or after the change), every record whose name is fuzzily close within
their blocks, and then the whole current clusters of all of those; it runs the full
matcher (:func:`rules.matching.match_accounts` logic) on that neighbourhood only. Ids of
clusters outside the neighbourhood are reserved, so they never move.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from rapidfuzz import fuzz, process

from rules.features import RecordFeatures
from rules.matching import (
    AccountRecord,
    Decision,
    Link,
    MatchResult,
    MatchSettings,
    PreviousLinks,
    RecordKey,
    ReviewItem,
    _Matcher,
)
from rules.names import fuzzy_blocks

Evidence = tuple[list[str], list[str]]  # (exact keys, fuzzy block keys) of one record


def _evidence_keys(f: RecordFeatures, i: int) -> Evidence:
    """Exact keys (shared = candidate) and fuzzy block keys of record ``i``."""
    exact = []
    if f.duns[i]:
        exact.append("d:" + f.duns[i])  # type: ignore[operator]  # checked just above
    if f.vat[i]:
        exact.append("v:" + f.vat[i])  # type: ignore[operator]  # checked just above
    if f.domain[i]:
        exact.append("w:" + f.domain[i])  # type: ignore[operator]  # checked just above
    compact, country = f.compact[i], f.country[i]
    if len(compact) >= 2:
        exact.append("n:" + compact)  # same name in any country (country-less matching)
    blocks = []
    if country and len(compact) >= 4:
        blocks = [f"b:{country}|{b}" for b in fuzzy_blocks(f.name[i])]
    return exact, blocks


class _HeldOutside:
    """Customer ids in use by clusters outside the re-matched area (a view, not a copy)."""

    def __init__(self, members: Mapping[str, list[RecordKey]], inside: set[str]) -> None:
        self._members, self._inside = members, inside

    def __contains__(self, customer_id: object) -> bool:
        return customer_id in self._members and customer_id not in self._inside


class MatchIndex:
    """The matched state of every account, updated by changes."""

    def __init__(self, *, settings: MatchSettings | None = None) -> None:
        self.settings = settings or MatchSettings()
        self.records: dict[RecordKey, AccountRecord] = {}
        self.links: dict[RecordKey, Link] = {}
        self.review: dict[frozenset[RecordKey], ReviewItem] = {}
        self.decisions: dict[frozenset[RecordKey], Decision] = {}
        # lists, not sets: most keys hold one or two records and a set costs four times more
        self._exact: dict[str, list[RecordKey]] = defaultdict(list)
        self._blocks: dict[str, list[RecordKey]] = defaultdict(list)
        self._compact: dict[RecordKey, str] = {}  # cleaned name without spaces
        self._members: dict[str, list[RecordKey]] = defaultdict(list)

    # -- building ---------------------------------------------------------------------------
    def rebuild(self, records: Iterable[AccountRecord], *, decisions: Iterable[Decision] = (),
                previous: PreviousLinks | None = None,
                features: RecordFeatures | None = None) -> MatchResult:
        """Match everything from scratch (first cycle, or after a settings change);
        ``features``: the records' features when already known (stored keys)."""
        self.__init__(settings=self.settings)  # type: ignore[misc]  # reset in place
        records = list(records)
        self.decisions = {frozenset((d.a, d.b)): d for d in decisions}
        if features is None:
            features = RecordFeatures(records)
        elif len(features.keys) != len(records):  # a cheap guard: the caller made both
            raise ValueError("the features given are not those of the records")
        matcher = _Matcher(features, self.settings, self.decisions.values())
        matcher.run()
        result = matcher.result(previous or {})
        self.records = {r.key: r for r in records}
        for i, key in enumerate(features.keys):
            self._index(key, features, i)
        self._apply(result, set(features.keys))
        return result

    def _index(self, key: RecordKey, f: RecordFeatures, i: int) -> None:
        self._index_keys(key, _evidence_keys(f, i), f.compact[i])

    def _index_keys(self, key: RecordKey, evidence: Evidence, compact: str) -> None:
        exact, blocks = evidence
        for k in exact:
            self._exact[k].append(key)
        for b in blocks:
            self._blocks[b].append(key)
        self._compact[key] = compact

    def _evidence_of(self, keys: Iterable[RecordKey]) -> dict[RecordKey, Evidence]:
        """The evidence keys of stored records, normalised again (cheaper than keeping
        them), all at once: one record at a time cost four times as much."""
        f = RecordFeatures([self.records[k] for k in dict.fromkeys(keys) if k in self.records])
        return {key: _evidence_keys(f, i) for i, key in enumerate(f.keys)}

    def _unindex(self, key: RecordKey, evidence: Evidence) -> None:
        exact, blocks = evidence
        for table, names in ((self._exact, exact), (self._blocks, blocks)):
            for k in names:
                members = table.get(k)
                if members and key in members:
                    members.remove(key)
                    if not members:
                        del table[k]
        self._compact.pop(key, None)

    # -- updating ---------------------------------------------------------------------------
    def update(self, changed: Iterable[AccountRecord] = (), removed: Iterable[RecordKey] = (),
               decisions: Iterable[Decision] = ()) -> MatchResult:
        """Apply changed/new records, removed records and new human decisions.

        Returns the links of the re-matched neighbourhood (every record whose link may
        have changed) and its review items; :attr:`links` holds the whole state.
        """
        changed = list(changed)
        touched: set[RecordKey] = set()
        for decision in decisions:
            self.decisions[frozenset((decision.a, decision.b))] = decision
            touched.update(k for k in (decision.a, decision.b) if k in self.records)
        neighbours: set[RecordKey] = set()
        removed = [k for k in dict.fromkeys(removed) if k in self.records]
        stored = self._evidence_of([*removed, *(r.key for r in changed)])  # before the change
        for key in removed:
            neighbours |= self._candidates(key, stored[key])
            self._forget(key, stored[key])
        fresh = RecordFeatures(changed) if changed else None
        for key in [r.key for r in changed]:
            if key in self.records:  # what it was close to before the change
                neighbours |= self._candidates(key, stored[key])
                self._unindex(key, stored[key])
        if fresh is not None:
            now = {key: _evidence_keys(fresh, i) for i, key in enumerate(fresh.keys)}
            for key, evidence, compact in zip(fresh.keys, now.values(), fresh.compact,
                                              strict=True):
                self._index_keys(key, evidence, compact)
            self.records.update({r.key: r for r in changed})
            for key in fresh.keys:
                neighbours |= self._candidates(key, now[key])
                touched.add(key)
        area = self._whole_clusters(neighbours | touched)
        if not area:
            return MatchResult(links={}, review=())
        # where constraints compete (a "never" between two members) the order decides:
        # the features put the records in key order, as a full match sees them, so the
        # area is looked up as it comes (not found by walking every record, 0.25 s at a
        # million)
        subset = [self.records[k] for k in area]
        relevant = [d for pair, d in self.decisions.items() if pair <= area]
        features = RecordFeatures(subset)
        matcher = _Matcher(features, self.settings, relevant)
        matcher.run()
        previous: dict[tuple[str, str, str], str] = {
            (k[0], "account", k[1]): self.links[k].customer_id for k in area if k in self.links}
        inside = set(previous.values())  # the area holds these clusters whole
        result = matcher.result(previous, reserved=_HeldOutside(self._members, inside))
        self._apply(result, area)
        return result

    def _candidates(self, key: RecordKey, evidence: Evidence) -> set[RecordKey]:
        """``key`` and the records sharing an exact key with it or fuzzily close to its
        indexed name within its blocks (``evidence``: its exact and block keys)."""
        exact, blocks = evidence
        found: set[RecordKey] = {key}
        for k in exact:
            members = self._exact.get(k, [])
            if not k.startswith("w:") or len(members) <= self.settings.max_domain_group:
                found.update(members)
        mine = self._compact.get(key)
        for b in blocks:
            keys = self._blocks.get(b, [])
            if mine is None or len(keys) > self.settings.max_block:
                continue
            close = process.extract(mine, [self._compact[k] for k in keys], scorer=fuzz.ratio,
                                    score_cutoff=self.settings.fuzzy_review, limit=None)
            found.update(keys[offset] for _, _, offset in close)
        return found

    def _whole_clusters(self, keys: set[RecordKey]) -> set[RecordKey]:
        area = set(keys)
        for key in keys:
            link = self.links.get(key)
            if link is not None:
                area.update(self._members.get(link.customer_id, ()))
        return {k for k in area if k in self.records}

    def _forget(self, key: RecordKey, evidence: Evidence) -> None:
        self._unindex(key, evidence)
        del self.records[key]
        link = self.links.pop(key, None)
        if link is not None:
            self._drop_members(link.customer_id, {key})
        for pair in [p for p in self.review if key in p]:
            del self.review[pair]

    def _apply(self, result: MatchResult, area: set[RecordKey]) -> None:
        old_ids = {link.customer_id for key in area if (link := self.links.get(key))}
        for customer_id in old_ids:
            self._drop_members(customer_id, area)
        for key, link in result.links.items():
            self.links[key] = link
            self._members[link.customer_id].append(key)
        for pair in [p for p in self.review if p & area]:
            del self.review[pair]
        for item in result.review:
            self.review[frozenset((item.a, item.b))] = item

    def _drop_members(self, customer_id: str, keys: set[RecordKey]) -> None:
        kept = [k for k in self._members.get(customer_id, ()) if k not in keys]
        if kept:
            self._members[customer_id] = kept
        else:
            self._members.pop(customer_id, None)

    def result(self) -> MatchResult:
        """The whole current state as a :class:`MatchResult`."""
        ordered = sorted(self.review.values(), key=lambda r: (-r.score, r.a, r.b))
        return MatchResult(links=dict(self.links), review=tuple(ordered))
