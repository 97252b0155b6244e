"""What the Pipedrive connector sends, and what it is answered, validated against the official
v2 OpenAPI spec (requests recorded on the wire, not rebuilt)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from connectors.base import Entity, RecordUpdate
from tests.connectors.harness_pipedrive import PipedriveHarness
from tests.sandbox.test_pipedrive_spec import load_openapi, validate_exchange


class RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[requests.Response] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = super().send(request, **kwargs)
        self.exchanges.append(response)
        return response


@pytest.fixture
def h() -> Iterator[PipedriveHarness]:
    harness = PipedriveHarness()
    yield harness
    harness.stop()


def test_connector_traffic_validates_against_the_spec(h: PipedriveHarness) -> None:
    deals = h.create(Entity.OPPORTUNITY, 7)
    orgs = h.create(Entity.ACCOUNT, 3)
    session = RecordingSession()
    connector = h.connector(page_size=5, session=session)
    cursors = {}
    for entity in (Entity.ACCOUNT, Entity.OPPORTUNITY):
        pages = list(connector.read(entity, None, list(h.fields(entity))))
        cursors[entity] = pages[-1].cursor
    h.delete(Entity.OPPORTUNITY, deals[0])
    h.advance(timedelta(seconds=2))
    results = connector.write(Entity.OPPORTUNITY, [
        RecordUpdate(deals[1], {"Registration status": "Expired", "Channel conflict": "Yes",
                                "Registration expires": "2026-12-31", "Reassign to": None}),
    ])
    results = [*results, *connector.write(Entity.ACCOUNT, [
        RecordUpdate(orgs[0], {"Channel conflict reason": "Also registered elsewhere",
                               "Channel conflict": "No"}),
    ])]
    assert all(r.ok for r in results)
    for entity in (Entity.ACCOUNT, Entity.OPPORTUNITY):
        list(connector.read(entity, cursors[entity], list(h.fields(entity))))

    openapi = load_openapi()
    paths = {(r.request.method, (r.request.path_url or "").split("?")[0])
             for r in session.exchanges}
    assert ("GET", "/api/v2/deals") in paths and ("PATCH", f"/api/v2/deals/{deals[1]}") in paths
    assert any("status=deleted" in (r.request.path_url or "") for r in session.exchanges)
    for response in session.exchanges:
        assert response.status_code == 200
        validate_exchange(openapi, h.running.base_url, response)
