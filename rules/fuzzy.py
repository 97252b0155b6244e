"""Candidate pairs of close company names for matching: within a country, names sharing a
fuzzy block (first word, or the first letters of every word) that rapidfuzz finds close.

Depends on the normalised names alone, not on what matching has joined so far, so it may
run beside the rest of matching (another process at scale). Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from rules.names import fuzzy_blocks

# (record a, record b, similarity 0..100, edits apart (3: three or more), ambiguous:
# either of them is one typo away from several names)
FuzzyPair = tuple[int, int, float, int, bool]


def fuzzy_candidates(
    names: Sequence[str], compacts: Sequence[str], countries: Sequence[str | None], *,
    review_floor: float, min_typo_length: int, max_block: int,
) -> tuple[list[FuzzyPair], list[str]]:
    """Close pairs by record position, most similar first (then by position), and the
    blocks skipped for holding more than ``max_block`` names."""
    reps: dict[tuple[str, str], int] = {}
    for i, compact in enumerate(compacts):
        country = countries[i]
        if country and len(compact) >= 4:
            reps.setdefault((country, compact), i)
    blocks: dict[tuple[str, str], list[int]] = defaultdict(list)
    for (country, _), i in reps.items():
        for name_block in fuzzy_blocks(names[i]):
            blocks[(country, name_block)].append(i)
    skipped: list[str] = []
    candidates: dict[tuple[int, int], float] = {}
    for block, members in blocks.items():
        if len(members) < 2:
            continue
        if len(members) > max_block:
            skipped.append(f"{block[0]}/{block[1]} ({len(members)} names)")
            continue
        choices = [compacts[i] for i in members]
        for pos in range(len(members) - 1):
            found = process.extract(choices[pos], choices[pos + 1:], scorer=fuzz.ratio,
                                    score_cutoff=review_floor, limit=None)
            for _, score, offset in found:
                a, b = members[pos], members[pos + 1 + offset]
                candidates[(a, b) if a < b else (b, a)] = score
    # one slip of the keyboard (a letter dropped, doubled, swapped or wrong) is a typo;
    # two are as likely another company ("Nexor" / "Nexra")
    edits = {pair: OSA.distance(compacts[pair[0]], compacts[pair[1]], score_cutoff=3)
             for pair in candidates}
    typo_neighbours: Counter[int] = Counter()
    for (a, b), n in edits.items():
        if n <= 1 and min(len(compacts[a]), len(compacts[b])) >= min_typo_length:
            typo_neighbours.update((a, b))
    ordered = sorted(candidates.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(a, b, score, edits[(a, b)], max(typo_neighbours[a], typo_neighbours[b]) > 1)
            for (a, b), score in ordered], skipped
