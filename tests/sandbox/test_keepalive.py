"""Persistent connections: the sandboxes answer over HTTP/1.1 and keep connections open, as
the vendors' APIs do, so each of our connectors pays its TCP and TLS handshakes once, not
once per call. Faults that cut a connection cost exactly one new one."""

from __future__ import annotations

import importlib
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from cli.democonfig import write_config
from config.loader import load_settings
from connectors.base import Entity
from sandbox.core import Faults, SandboxApp, json_response
from sandbox.launch import SandboxSet, start_world
from sandbox.scenario import generate
from sandbox.serving import RunningSandbox, serve
from sync.cycle import Runtime
from tests.sandbox.conftest import VENDORS, VendorClient
from wiring import Wiring

CUT = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)


def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- the four vendor sandboxes, called with plain requests ----------------------------------
@pytest.fixture(params=VENDORS)
def box(request: pytest.FixtureRequest, running: dict[str, VendorClient]) -> Iterator[VendorClient]:
    client = running[request.param]
    assert client.read().status_code == 200  # a connection is open before the test counts
    client.app.connections.reset()
    yield client
    client.app.faults.update(asdict(Faults()))


def test_calls_share_one_connection(box: VendorClient) -> None:
    for _ in range(10):
        answer = box.read()
        assert answer.status_code == 200 and answer.raw.version == 11
        assert answer.headers.get("Connection", "").lower() != "close"
    assert box.rename_deal("D1", "Kept alive").status_code in (200, 204)
    assert box.app.requests.count() >= 12
    assert box.admin("GET", "connections").json() == {"accepted": 0, "open": 1}


@pytest.mark.parametrize("fault", ["drop_next", "truncate_next"])
def test_a_cut_connection_is_replaced_by_one_new_one(box: VendorClient, fault: str) -> None:
    box.app.faults.update({fault: 1})
    with pytest.raises(CUT):
        box.read().content  # noqa: B018  # reading the body is what fails when truncated
    for _ in range(3):
        assert box.read().status_code == 200
    assert box.app.connections.accepted == 1


@pytest.mark.parametrize("fault", ["rate_limit_next", "error_next", "malformed_next"])
def test_a_faulted_answer_with_a_whole_body_keeps_the_connection(
        box: VendorClient, fault: str) -> None:
    """A write answered before the endpoint reads its body: the server skips the unread
    body, so the next request on the connection is read from where it starts."""
    box.app.faults.update({fault: 1})
    box.rename_deal("D1", "Faulted")
    assert box.rename_deal("D1", "Renamed").status_code in (200, 204)
    assert box.read().status_code == 200
    assert box.app.connections.accepted == 0


# -- framing, idle timeout and stop, on a minimal app ---------------------------------------
class TinyApp(SandboxApp):
    vendor = "tiny"

    def rules(self) -> Iterable[Rule]:
        yield Rule("/json", endpoint="answer_json")
        yield Rule("/stream", endpoint="answer_stream")
        yield Rule("/echo", endpoint="echo", methods=["POST"])

    def answer_json(self, request: Request) -> Response:
        return json_response({"ok": True})

    def answer_stream(self, request: Request) -> Response:
        return Response(iter([b"one,", b"two"]), content_type="text/plain")  # no length

    def echo(self, request: Request) -> Response:
        return Response(request.get_data(), content_type="application/octet-stream")


@pytest.fixture
def tiny() -> Iterator[tuple[RunningSandbox, requests.Session]]:
    served = serve(TinyApp())
    with requests.Session() as session:
        yield served, session
    served.stop()


def test_an_answer_without_a_length_is_chunked(
        tiny: tuple[RunningSandbox, requests.Session]) -> None:
    served, session = tiny
    for _ in range(3):
        answer = session.get(served.base_url + "/stream", timeout=5)
        assert answer.headers["Transfer-Encoding"] == "chunked"
        assert answer.content == b"one,two"
    assert served.app.connections.accepted == 1


def test_request_bodies_read_or_not_never_spill_into_the_next_request(
        tiny: tuple[RunningSandbox, requests.Session]) -> None:
    served, session = tiny
    base = served.base_url
    chunked = session.post(base + "/echo", data=iter([b"ab", b"cd"]), timeout=5)
    assert chunked.content == b"abcd"
    # bodies the app never reads, one sized, one chunked: a GET has no use for them
    assert session.request("GET", base + "/json", data=b"x" * 10_000, timeout=5).ok
    assert session.request("GET", base + "/json", data=iter([b"y" * 5_000]), timeout=5).ok
    assert session.post(base + "/echo", data=b"last", timeout=5).content == b"last"
    assert served.app.connections.accepted == 1


def test_an_http_1_0_client_gets_its_connection_closed(
        tiny: tuple[RunningSandbox, requests.Session]) -> None:
    served, _ = tiny
    with socket.create_connection(("127.0.0.1", served.server.server_port), timeout=5) as sock:
        sock.sendall(b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # ends only when the server closes
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert body == b'{"ok":true}'


def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    served = serve(TinyApp(), idle_timeout_s=0.2)
    try:
        with requests.Session() as session:
            assert session.get(served.base_url + "/json", timeout=5).ok
            assert served.app.connections.snapshot() == {"accepted": 1, "open": 1}
            assert eventually(lambda: served.app.connections.snapshot()["open"] == 0)
            assert session.get(served.base_url + "/json", timeout=5).ok  # on a new one
            assert served.app.connections.accepted == 2
    finally:
        served.stop()


def test_stop_is_prompt_and_ends_idle_connections(
        tiny: tuple[RunningSandbox, requests.Session]) -> None:
    served, session = tiny
    assert session.get(served.base_url + "/json", timeout=5).ok
    started = time.monotonic()
    served.stop()
    assert time.monotonic() - started < 1.0
    assert eventually(lambda: served.app.connections.snapshot()["open"] == 0)
    with pytest.raises(requests.exceptions.ConnectionError):  # not served by a stopped box
        session.get(served.base_url + "/json", timeout=5)


# -- the real connectors, built as the composition root builds them ------------------------
# HubSpot's SDK gives every API it generates (basic, search and batch per object type,
# properties, associations) its own ApiClient and urllib3 pool: the connector makes them
# share one, so its calls ride one connection too.
MOST_CONNECTIONS = {"salesforce": 1, "hubspot": 1, "pipedrive": 1, "dynamics": 1}


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxSet, Wiring]]:
    directory = tmp_path_factory.mktemp("wired")
    sandboxes = start_world(generate(seed=3, customers=20), tls_dir=directory / "tls")
    wiring = Wiring(load_settings(write_config(sandboxes, directory)),
                    sleep=lambda _seconds: None)
    try:
        yield sandboxes, wiring
    finally:
        wiring.close()
        sandboxes.stop()


def pull_everything(runtime: Runtime) -> None:
    for entity in Entity:
        runtime.connector.describe(entity)
        fields = runtime.mapping.entity(entity).read_fields()
        for _page in runtime.connector.read(entity, None, fields):
            pass


@pytest.mark.parametrize("vendor", VENDORS)
def test_connectors_reuse_their_connections(vendor: str, wired: tuple[SandboxSet, Wiring]
                                            ) -> None:
    sandboxes, wiring = wired
    runtime = next(rt for rt in wiring.runtimes() if rt.vendor == vendor)
    app: Any = sandboxes[runtime.name].app
    if vendor == "hubspot":  # its five searches a second would only make the connector wait
        app.limits.search_per_second = None
    pull_everything(runtime)
    calls, connections = app.requests.count(), app.connections.accepted
    assert 1 <= connections <= MOST_CONNECTIONS[vendor], (calls, connections)
    pull_everything(runtime)  # as the next two cycles would
    pull_everything(runtime)
    assert app.requests.count() >= calls + 4
    assert app.connections.accepted == connections


# -- the servers the connector harnesses and the benchmarks start --------------------------
# salesforce.serve_https and the Pipedrive harness (a sandbox on its own clock) used to run
# werkzeug servers of their own that closed every connection.
def harness(vendor: str) -> Any:
    return importlib.import_module(f"tests.connectors.harness_{vendor}").make_harness()


def session_for(served: RunningSandbox) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # a REQUESTS_CA_BUNDLE in the environment would beat verify
    session.verify = str(served.tls.ca_file) if served.tls else True
    return session


@pytest.mark.parametrize("vendor", ["salesforce", "pipedrive"])
def test_harness_sandboxes_keep_their_connections(vendor: str) -> None:
    h = harness(vendor)
    try:
        h.create(Entity.ACCOUNT, 3)
        connector = h.connector()
        for _ in range(3):
            pages = list(connector.read(Entity.ACCOUNT, None, h.fields(Entity.ACCOUNT)))
            assert sum(len(page.records) for page in pages) == 3
        assert h.app.requests.count() >= 3
        assert h.app.connections.snapshot() == {"accepted": 1, "open": 1}
        with session_for(h.running) as session:  # a second client, asking over HTTP
            for _ in range(3):
                counted = session.get(h.running.base_url + "/__sandbox/connections", timeout=5)
                assert counted.json() == {"accepted": 2, "open": 2}
    finally:
        h.stop()


def test_a_pipedrive_sandbox_on_its_own_clock_sends_one_date_its_own() -> None:
    h = harness("pipedrive")
    try:
        h.advance(timedelta(hours=2))
        with session_for(h.running) as session:
            answer = session.get(h.running.base_url + "/api/v2/organizations", timeout=5,
                                 headers={"x-api-token": h.app.credentials()["api_token"]})
        assert answer.status_code == 200
        dates = answer.raw.headers.getlist("Date")
        assert len(dates) == 1
        assert abs(parsedate_to_datetime(dates[0]).timestamp() - h.now()) < 2  # not wall time
    finally:
        h.stop()
