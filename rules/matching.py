"""Recognising the same end customer across CRMs, with stable customer ids and a review list.

Evidence, strongest first: a human "same" decision; the same DUNS; the same VAT/tax id;
the same registrable web domain (free-mail ignored; names must not disagree); the same
cleaned name in the same country; a close cleaned name within a block (country + name
key). Clusters form by union-find; a merge is refused when the two clusters hold
different DUNS or a human "never" pair, so a "never" always splits and a "same" always
joins (unless a "never" forbids it). Uncertain pairs become review items with their
evidence. Pure: no I/O, no clock.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from functools import partial

from rapidfuzz import fuzz

from rules.customer_ids import PreviousLinks, RecordKey, stable_ids
from rules.features import RecordFeatures
from rules.fuzzy import FuzzyPair, fuzzy_candidates
from rules.names import unrelated_domains

METHODS = ("single", "human", "duns", "vat", "domain", "name", "name_no_country", "name_fuzzy")
_METHOD_CODE = {method: code for code, method in enumerate(METHODS)}
Evidence = tuple[str, ...] | Callable[[], tuple[str, ...]]
FuzzyFound = Callable[[], tuple[list[FuzzyPair], list[str]]]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """What matching needs of one account; ``domain`` may be a website URL or an e-mail."""

    connection: str
    external_id: str
    name: str | None
    domain: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    duns: str | None = None
    vat_id: str | None = None

    @property
    def key(self) -> RecordKey:
        return (self.connection, self.external_id)


@dataclass(frozen=True, slots=True)
class Decision:
    """A person's verdict on two accounts: ``"same"`` or ``"never"``; it always wins."""

    a: RecordKey
    b: RecordKey
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in ("same", "never"):
            raise ValueError(f"decision {self.a} / {self.b}: verdict must be 'same' or "
                             f"'never', not {self.verdict!r}")


@dataclass(frozen=True, slots=True)
class Link:
    """Which customer an account belongs to, and the strongest evidence that put it there."""

    customer_id: str
    method: str  # human | duns | vat | domain | name | name_no_country | name_fuzzy | single
    score: float  # 0..1


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """An uncertain pair for a person to decide (``channelsync review``)."""

    a: RecordKey
    b: RecordKey
    score: float  # 0..1
    method: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MatchSettings:
    fuzzy_merge: float = 90.0  # rapidfuzz ratio of compact cleaned names
    fuzzy_review: float = 85.0
    min_typo_length: int = 6  # shorter names one edit apart go to review, not merged
    domain_name_floor: float = 50.0  # below: a shared domain goes to review instead
    max_domain_group: int = 50  # a domain on more accounts is a host, not a company
    max_block: int = 5000  # distinct names per fuzzy block; larger blocks are skipped
    id_prefix: str = "cust-"


@dataclass(frozen=True, slots=True)
class MatchResult:
    links: Mapping[RecordKey, Link]
    review: tuple[ReviewItem, ...]
    skipped_blocks: tuple[str, ...] = ()  # fuzzy blocks too large to compare


class _Clusters:
    """Union-find with cannot-link constraints (different DUNS, human "never")."""

    def __init__(self, features: RecordFeatures, never: list[tuple[int, int]]) -> None:
        n = len(features.keys)
        # compact arrays: a million accounts must stay cheap to hold
        self.parent = array("l", range(n))
        self.size = array("l", [1]) * n
        self.duns = {i: d for i, d in enumerate(features.duns) if d}
        self.never: dict[int, dict[int, int]] = defaultdict(dict)
        for pair_id, (i, j) in enumerate(never):
            self.never[i][pair_id] = 0
            self.never[j][pair_id] = 1

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def blocked(self, ra: int, rb: int) -> str | None:
        da, db = self.duns.get(ra), self.duns.get(rb)
        if da and db and da != db:
            return f"DUNS differ: {da} / {db}"
        na, nb = self.never.get(ra), self.never.get(rb)
        if na and nb:
            small, large = (na, nb) if len(na) <= len(nb) else (nb, na)
            if any(large.get(p, side) != side for p, side in small.items()):
                return "a person decided these are never the same"
        return None

    def union(self, i: int, j: int, *, force: bool = False) -> str | None:
        """Join the clusters of i and j; the reason when refused, else None."""
        ra, rb = self.find(i), self.find(j)
        if ra == rb:
            return None
        reason = self.blocked(ra, rb)
        if reason and not (force and reason.startswith("DUNS")):
            return reason
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        if rb in self.duns:
            self.duns.setdefault(ra, self.duns[rb])
        if rb in self.never:
            moved = self.never.pop(rb)
            self.never[ra].update(moved)
        return None


class _Matcher:
    def __init__(self, features: RecordFeatures, settings: MatchSettings,
                 decisions: Iterable[Decision]) -> None:
        self.f = features
        self.s = settings
        index = {k: i for i, k in enumerate(features.keys)}
        self.decided: set[tuple[int, int]] = set()
        same: list[tuple[int, int]] = []
        never: list[tuple[int, int]] = []
        for d in decisions:
            if d.a in index and d.b in index and d.a != d.b:
                pair = tuple(sorted((index[d.a], index[d.b])))
                self.decided.add(pair)  # type: ignore[arg-type]  # sorted pair of two ints
                (same if d.verdict == "same" else never).append(pair)  # type: ignore[arg-type]
        self.clusters = _Clusters(features, never)
        # strongest accepted evidence per record: score and an index into METHODS
        self.best_score = array("f", [-1.0]) * len(features.keys)
        self.best_method = bytearray(len(features.keys))
        self.reviews: list[tuple[int, int, float, str, tuple[str, ...]]] = []
        self.skipped: list[str] = []
        for i, j in same:
            self._join(i, j, 1.0, "human", force=True)

    def _join(self, i: int, j: int, score: float, method: str, *, force: bool = False,
              evidence: Evidence = ()) -> bool:
        """Merge; a refusal (other than a person's "never") becomes a review item.

        ``evidence`` may be a function, so hot loops only format text for refusals.
        """
        reason = self.clusters.union(i, j, force=force)
        if reason:
            if "never" not in reason:
                said = evidence() if callable(evidence) else evidence
                self.reviews.append((i, j, score, method, (*said, f"not merged: {reason}")))
            return False
        best_score = self.best_score
        if best_score[i] < score:
            best_score[i] = score
            self.best_method[i] = _METHOD_CODE[method]
        if best_score[j] < score:
            best_score[j] = score
            self.best_method[j] = _METHOD_CODE[method]
        return True

    def _similarity(self, i: int, j: int) -> float:
        a, b = self.f.name[i], self.f.name[j]
        if not a or not b:
            return 100.0
        return max(fuzz.ratio(self.f.compact[i], self.f.compact[j]), fuzz.token_set_ratio(a, b))

    def run(self, fuzzy: FuzzyFound | None = None) -> None:
        """``fuzzy``: where the close-name candidates come from when computed elsewhere
        (:func:`rules.fuzzy.fuzzy_candidates` of these features); asked for only once the
        exact evidence is joined, so it may be running meanwhile."""
        f = self.f
        self._by_key(f.duns, 1.0, "duns")
        self._by_key(f.vat, 0.99, "vat")
        self._domains()
        self._exact_names()
        self._fuzzy_names(fuzzy)

    def _by_key(self, values: list[str | None], score: float, method: str) -> None:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, value in enumerate(values):
            if value:
                groups[value].append(i)
        for value, members in groups.items():
            for j in members[1:]:
                self._join(members[0], j, score, method,
                           evidence=partial(_text, "same {} {}", method, value))

    def _domains(self) -> None:
        f, s = self.f, self.s
        groups: dict[str, list[int]] = defaultdict(list)
        for i, domain in enumerate(f.domain):
            if domain:
                groups[domain].append(i)
        for domain, members in groups.items():
            if len(members) < 2 or len(members) > s.max_domain_group:
                continue
            for pos, j in enumerate(members[1:], start=1):
                sim, i = max((self._similarity(i, j), -i) for i in members[:pos])
                i = -i
                evidence: tuple[str, ...] = (f"same domain {domain}", f"name similarity {sim:.0f}: "
                            f"{f.name[i]!r} ~ {f.name[j]!r}")
                countries_differ = f.country[i] and f.country[j] and f.country[i] != f.country[j]
                if sim >= s.domain_name_floor and not (countries_differ and sim < 90):
                    self._join(i, j, 0.95, "domain", evidence=evidence)
                elif self.clusters.find(i) != self.clusters.find(j):
                    if countries_differ:
                        evidence += (f"countries differ: {f.country[i]} / {f.country[j]}",)
                    self.reviews.append((i, j, 0.6, "domain", evidence))

    def _exact_names(self) -> None:
        f = self.f
        by_name: dict[tuple[str | None, str], list[int]] = defaultdict(list)
        for i, compact in enumerate(f.compact):
            if len(compact) >= 2:
                by_name[(f.country[i], compact)].append(i)
        countries_of: dict[str, list[str]] = defaultdict(list)
        for (country, compact), members in by_name.items():
            if country:
                countries_of[compact].append(country)
                for j in members[1:]:
                    self._join(members[0], j, 0.97, "name",
                               evidence=partial(_text, "same name {!r} in {}", f.name[j], country))
        for (country, compact), members in by_name.items():
            if not country:
                self._no_country(members, countries_of.get(compact, []), by_name)

    def _no_country(self, members: list[int], known: list[str],
                    by_name: Mapping[tuple[str | None, str], list[int]]) -> None:
        """Country-less accounts join the one country whose account has the same name."""
        f = self.f
        if not known:
            for j in members[1:]:
                self._join(members[0], j, 0.9, "name_no_country",
                           evidence=(f"same name {f.name[j]!r}, no country",))
            return
        for j in members:
            legal = f.legal_countries.get(j)
            fitting = sorted(c for c in known if legal is None or c in legal)
            evidence: tuple[str, ...] = (f"same name {f.name[j]!r}, country unknown",)
            if len(fitting) == 1:
                i = by_name[(fitting[0], f.compact[j])][0]
                # strict here: acme.de against acme.com is how namesakes abroad look
                if f.domain[i] and f.domain[j] and f.domain[i] != f.domain[j]:
                    evidence += (f"domains differ: {f.domain[i]} / {f.domain[j]}",)
                else:
                    self._join(i, j, 0.9, "name_no_country", evidence=evidence)
                    continue
                self.reviews.append((i, j, 0.7, "name", evidence))
                continue
            evidence += (f"that name exists in {', '.join(sorted(known))}",)
            if legal is not None:
                evidence += (f"legal form suggests {', '.join(sorted(legal))}",)
            for other in fitting or sorted(known):
                self.reviews.append((by_name[(other, f.compact[j])][0], j, 0.7, "name", evidence))

    def _fuzzy_names(self, found: FuzzyFound | None) -> None:
        f, s = self.f, self.s
        pairs, skipped = found() if found is not None else fuzzy_candidates(
            f.name, f.compact, f.country, review_floor=s.fuzzy_review,
            min_typo_length=s.min_typo_length, max_block=s.max_block)
        self.skipped.extend(skipped)
        for a, b, score, edits, ambiguous in pairs:
            self._fuzzy_pair(a, b, score, edits, ambiguous)

    def _fuzzy_pair(self, a: int, b: int, score: float, edits: int, ambiguous: bool) -> None:
        f, s = self.f, self.s
        ca, cb = f.compact[a], f.compact[b]
        evidence: tuple[str, ...] = (
            f"name similarity {score:.0f}: {f.name[a]!r} ~ {f.name[b]!r}",
            f"country {f.country[a]}")
        da, db = f.domain[a], f.domain[b]
        if da and db and unrelated_domains(da, db):
            if edits > 1:
                return  # different names and different websites: not worth a person's time
            evidence += (f"domains differ: {da} / {db}",)
        elif edits > 2:
            return  # a look-alike ("Acme Tools" / "Acme Foods" stays a review item)
        elif edits > 1 or min(len(ca), len(cb)) < s.min_typo_length:
            evidence += (f"{edits} edits apart" if edits > 1 else "short name",)
        elif ambiguous:
            evidence += ("several names are one typo apart here",)
        elif score >= s.fuzzy_merge:
            self._join(a, b, round(score / 100, 3), "name_fuzzy", evidence=evidence)
            return
        if self.clusters.find(a) != self.clusters.find(b):
            self.reviews.append((a, b, round(score / 100, 3), "name_fuzzy", evidence))

    def result(self, previous: PreviousLinks,
               reserved: Container[str] = frozenset()) -> MatchResult:
        f, clusters = self.f, self.clusters
        find = clusters.find
        roots = [find(i) for i in range(len(f.keys))]
        ids = stable_ids(roots, f.keys, previous, self.s.id_prefix, reserved)
        links: dict[RecordKey, Link] = {}
        shared: dict[tuple[str, int, float], Link] = {}  # a cluster's equal links: one object
        best_score, best_method = self.best_score, self.best_method
        for i, key in enumerate(f.keys):
            code = best_method[i]
            if not code:  # never joined anything: alone in its cluster
                links[key] = Link(ids[roots[i]], "single", 1.0)
                continue
            token = (ids[roots[i]], code, round(best_score[i], 3))
            link = shared.get(token)
            if link is None:
                link = shared[token] = Link(token[0], METHODS[code], token[2])
            links[key] = link
        review: dict[tuple[int, int], ReviewItem] = {}
        for i, j, score, method, evidence in self.reviews:
            pair = (i, j) if i < j else (j, i)
            if pair in self.decided or roots[i] == roots[j]:
                continue
            if pair not in review or review[pair].score < score:
                review[pair] = ReviewItem(a=f.keys[pair[0]], b=f.keys[pair[1]], score=score,
                                          method=method, evidence=evidence)
        ordered = sorted(review.values(), key=lambda r: (-r.score, r.a, r.b))
        return MatchResult(links=links, review=tuple(ordered), skipped_blocks=tuple(self.skipped))


def _text(template: str, *parts: object) -> tuple[str, ...]:
    return (template.format(*parts),)


def match_accounts(
    records: Iterable[AccountRecord],
    *,
    decisions: Iterable[Decision] = (),
    previous: PreviousLinks | None = None,
    settings: MatchSettings | None = None,
) -> MatchResult:
    """Cluster accounts into customers.

    ``previous`` maps ``(connection, "account", external_id)`` (or ``(connection,
    external_id)``) to the customer id of the last cycle, so ids stay stable.
    """
    return match_features(RecordFeatures(records), decisions=decisions, previous=previous,
                          settings=settings)


def match_features(
    features: RecordFeatures,
    *,
    decisions: Iterable[Decision] = (),
    previous: PreviousLinks | None = None,
    settings: MatchSettings | None = None,
    fuzzy: FuzzyFound | None = None,
) -> MatchResult:
    """:func:`match_accounts` over records already normalised (e.g. in parts, in parallel);
    ``fuzzy`` as in ``_Matcher.run``."""
    matcher = _Matcher(features, settings or MatchSettings(), decisions)
    matcher.run(fuzzy)
    return matcher.result(previous or {})
