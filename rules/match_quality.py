"""How well matching found the true customers: pairwise precision and recall against a
ground truth (the sandbox generator's)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from rules.matching import Link, RecordKey


def score_against_truth(
    links: Mapping[RecordKey, Link] | Mapping[RecordKey, str],
    truth: Mapping[RecordKey, str],
) -> tuple[float, float]:
    """Pairwise precision and recall over the accounts present in both mappings."""
    common = [k for k in links if k in truth]

    def cid(k: RecordKey) -> str:
        value = links[k]
        return value.customer_id if isinstance(value, Link) else value

    def pairs(counts: Iterable[int]) -> int:
        return sum(n * (n - 1) // 2 for n in counts)

    predicted = pairs(Counter(cid(k) for k in common).values())
    actual = pairs(Counter(truth[k] for k in common).values())
    both = pairs(Counter((cid(k), truth[k]) for k in common).values())
    precision = both / predicted if predicted else 1.0
    recall = both / actual if actual else 1.0
    return precision, recall
