"""The HubSpot sandbox's search index lags writes by seconds (vendor docs), reads do not."""

from __future__ import annotations

from sandbox.hubspot import HubSpotSandbox

MODIFIED_FROM_0 = [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE",
                                 "value": "0"}]}]
BY_MODIFIED = [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
BY_NAME = [{"propertyName": "name", "direction": "ASCENDING"}]


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_a_change_is_searchable_between_half_the_lag_and_the_lag() -> None:
    app = HubSpotSandbox(search_index_lag_s=10.0)
    store = app.account.objects["companies"]
    clock = store.clock = Clock(1_000_000)
    ids = [int(app.account.create("companies", {"name": f"C{n}"})) for n in range(40)]

    def found(sorts: list[dict[str, str]] = BY_MODIFIED) -> set[int]:
        page, total = store.search(MODIFIED_FROM_0, sorts, 0, 200)
        assert total == len(page)
        return set(page)

    assert found() == set() and found(BY_NAME) == set()
    assert all(store.live(i) is not None for i in ids)  # reads see them at once
    clock.ms += 4_999
    assert found() == set()
    clock.ms += 2_500
    midway = found()
    assert 0 < len(midway) < len(ids)  # spread: not all at once, later ones may come first
    clock.ms += 2_501
    assert found() == found(BY_NAME) == set(ids)
    app.account.update("companies", str(ids[0]), {"name": "Changed"})
    assert ids[0] not in found()  # its new version is not indexed yet
    app.catch_up_search_index("companies", [str(ids[0])])
    assert ids[0] in found()


def test_no_lag_by_default() -> None:
    app = HubSpotSandbox()
    rid = int(app.account.create("companies", {"name": "At once"}))
    page, _ = app.account.objects["companies"].search(MODIFIED_FROM_0, BY_MODIFIED, 0, 10)
    assert page == [rid]
