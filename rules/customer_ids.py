"""Customer ids that stay put across cycles: a cluster keeps the id most of its members
had last time; a new cluster gets one derived from its first record's key. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping

RecordKey = tuple[str, str]  # (connection, external_id)
# Last cycle's links: (connection, "account", external_id) or (connection, external_id) -> id
PreviousLinks = Mapping[tuple[str, str, str], str] | Mapping[tuple[str, str], str]


def _previous_id(previous: PreviousLinks, key: RecordKey) -> str | None:
    lookup: Mapping[object, str] = previous  # type: ignore[assignment]  # either key shape
    found = lookup.get((key[0], "account", key[1]))
    return found if found is not None else lookup.get(key)


def stable_ids(roots: list[int], keys: list[RecordKey], previous: PreviousLinks, prefix: str,
                reserved: Container[str] = frozenset()) -> dict[int, str]:
    """A cluster keeps the id most of its members had; an id goes to one cluster only
    (``reserved``: ids that clusters outside this run hold). ``roots[i]`` is record i's
    cluster; records are sorted by key."""
    first: dict[int, int] = {}  # cluster -> its first record, in record order
    claim_first = first.setdefault
    for i, root in enumerate(roots):
        claim_first(root, i)
    votes: dict[tuple[int, str], int] = {}
    if previous:
        for i, key in enumerate(keys):
            old = _previous_id(previous, key)
            if old is not None:
                vote = (roots[i], old)
                votes[vote] = votes.get(vote, 0) + 1
    claims = sorted((-count, old, keys[first[root]], root) for (root, old), count in votes.items())
    ids: dict[int, str] = {}
    taken: set[str] = set()
    for _, old, _, root in claims:
        if root not in ids and old not in taken and old not in reserved:
            ids[root] = old
            taken.add(old)
    for root, i in first.items():
        if root in ids:
            continue
        digest = hashlib.sha1(f"{keys[i][0]}\x1f{keys[i][1]}".encode()).hexdigest()[:12]
        new, n = f"{prefix}{digest}", 1
        while new in taken or new in reserved:
            n += 1
            new = f"{prefix}{digest}-{n}"
        ids[root] = new
        taken.add(new)
    return ids
