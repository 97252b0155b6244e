"""Dataverse benchmarks: page serving vs processing, API calls, CPU per 1000 records, memory.

Run: ``python bench/bench_dynamics.py [--records N] [--big]``. The sandbox runs in its own
process so CPU and memory figures are the connector's alone. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # after the path tweak that lets the script run from a checkout
import structlog

from connectors.base import Entity, RecordUpdate
from connectors.dynamics import DynamicsConnector, MsalTokenProvider
from connectors.dynamics.reading import Reader, ReadPlan
from connectors.http import QuotaGovernor, RetryPolicy, make_session

FIELDS = ["name", "websiteurl", "address1_country", "new_duns", "new_vatid",
          "new_channelowner", "_ownerid_value", "new_partnerid", "createdon", "modifiedon",
          "statecode"]
TLS_DIR = Path(tempfile.gettempdir()) / "channelsync-dynamics-bench-tls"


def _rss_kb(pid: str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def seed(app: Any, count: int) -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with app.lock:
        for i in range(count):
            stamp = (start + timedelta(seconds=i // 3)).strftime("%Y-%m-%dT%H:%M:%SZ")
            app.store.insert("account", {
                "name": f"Customer {i} GmbH", "websiteurl": f"https://c{i}.example",
                "address1_country": "Germany", "new_duns": f"{i:09d}", "new_vatid": f"DE{i}",
                "new_channelowner": "direct", "_ownerid_value": app.app_user_id,
                "statecode": 0, "new_channelconflict": False}, stamp=stamp)


def serve_sandbox(records: int, queue: Any, stop: Any) -> None:
    from sandbox.dynamics import DynamicsApp
    from sandbox.serving import serve
    from sandbox.tls import ensure_tls

    before = _rss_kb()
    app = DynamicsApp(request_limit=10**9)
    seed(app, records)
    rss = _rss_kb() - before
    # serving cost of one max-size page, measured in-process with werkzeug's test client
    from werkzeug.test import Client

    client = Client(app)
    token = app.authority.issue({"grant_type": "client_credentials", "client_id": app.client_id,
                                 "client_secret": app.client_secret,
                                 "scope": "http://localhost/.default"},
                                base="http://localhost", environment_url="http://localhost")
    headers = {"Authorization": f"Bearer {token['access_token']}",
               "Prefer": "odata.maxpagesize=5000"}
    url = "/api/data/v9.2/accounts?$select=" + ",".join(f for f in FIELDS if f != "modifiedon")
    url += ",accountid,modifiedon"
    timings = []
    for _ in range(5):  # CPU time: wall time is meaningless on a shared, loaded machine
        t0 = time.process_time()
        body = client.get(url, headers=headers).get_data()
        timings.append(time.process_time() - t0)
    running = serve(app, tls=ensure_tls(TLS_DIR))
    app.base_url = running.base_url
    app.requests.reset()
    queue.put({"credentials": app.credentials(), "sandbox_rss_kb": rss,
               "serve_page_s": min(timings), "page_bytes": len(body),
               "serve_first_page_s": timings[0]})
    stop.wait()
    running.stop()


def start(records: int) -> tuple[Any, Any, dict[str, Any]]:
    ctx = mp.get_context("spawn")
    queue, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=serve_sandbox, args=(records, queue, stop), daemon=True)
    proc.start()
    info = queue.get(timeout=900)
    return proc, stop, info


def connector_for(creds: dict[str, Any], page_size: int = 5000) -> DynamicsConnector:
    session = make_session(ca_bundle=str(TLS_DIR / "sandbox-ca.pem"))
    tokens = MsalTokenProvider(client_id=creds["client_id"], authority=creds["authority"],
                               credential=creds["client_secret"],
                               environment_url=creds["environment_url"], http_client=session)
    return DynamicsConnector(session=session, environment_url=creds["environment_url"],
                             token_provider=tokens, retry=RetryPolicy(),
                             quota=QuotaGovernor(unit="requests", window="5min", limit=None),
                             page_size=page_size)


def admin(creds: dict[str, Any], method: str, what: str) -> Any:
    session = make_session(ca_bundle=str(TLS_DIR / "sandbox-ca.pem"))
    return session.request(method, f"{creds['environment_url']}/__sandbox/{what}").json()


def calls(snapshot: dict[str, int], needle: str) -> int:
    return sum(n for key, n in snapshot.items() if needle in key)


def run(records: int, big: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"vendor": "dynamics", "records": records}
    proc, stop, info = start(records)
    creds = info["credentials"]
    try:
        out["sandbox_serve_max_page_cpu_ms"] = round(info["serve_page_s"] * 1000, 1)
        out["sandbox_serve_first_page_cpu_ms_incl_sort"] = round(
            info["serve_first_page_s"] * 1000, 1)
        connector = connector_for(creds)
        # connector processing of one max-size page (decode only, no I/O)
        meta = connector.table(Entity.ACCOUNT)
        plan = ReadPlan.build(meta, FIELDS)
        session = make_session(ca_bundle=str(TLS_DIR / "sandbox-ca.pem"))
        token = connector._tokens.token()
        page_url = f"{connector.api_url}accounts?$select={plan.select}"
        raw = session.get(page_url, headers={"Authorization": f"Bearer {token}",
                                             "Prefer": "odata.maxpagesize=5000"}).content
        reader = Reader(connector)
        best = math.inf
        for _ in range(5):
            t0 = time.process_time()
            reader.decode(meta, plan, orjson.loads(raw)["value"])
            best = min(best, time.process_time() - t0)
        out["connector_process_max_page_cpu_ms"] = round(best * 1000, 1)

        # full pull: API calls and CPU
        # first pull of a new connector (msal discovery + token, metadata), then a second
        # pull with the same connector: cached token and metadata
        puller = connector_for(creds)
        for label in ("full_pull", "second_full_pull"):
            admin(creds, "DELETE", "requests")
            pulled = sum(len(p.records) for p in puller.read(Entity.ACCOUNT, None, FIELDS))
            snap = admin(creds, "GET", "requests")
            list_calls = calls(snap, "/<set_name>")
            out[label] = {"records": pulled, "list_calls": list_calls,
                          "all_calls": sum(snap.values()),
                          "minimum_list_calls": math.ceil(pulled / 5000),
                          "overhead_calls": sum(snap.values()) - math.ceil(pulled / 5000),
                          "overhead": {k: v for k, v in snap.items() if "/<set_name>" not in k}}

        # CPU: the connector's whole pull (new session, token, schema check, pages) against a
        # plain loop over the same pages (new session, requests + json); best of three each,
        # alternating, since the machine is shared
        headers = {"Authorization": f"Bearer {token}", "Prefer": "odata.maxpagesize=5000"}
        cpu_pull = cpu_plain = math.inf
        plain = 0
        for _ in range(3):
            cpu0 = time.process_time()
            for _page in connector_for(creds).read(Entity.ACCOUNT, None, FIELDS):
                pass
            cpu_pull = min(cpu_pull, time.process_time() - cpu0)
            cpu0 = time.process_time()
            fresh = make_session(ca_bundle=str(TLS_DIR / "sandbox-ca.pem"))
            url: str | None = page_url
            plain = 0
            while url:
                body = fresh.get(url, headers=headers).json()
                plain += len(body["value"])
                url = body.get("@odata.nextLink")
            cpu_plain = min(cpu_plain, time.process_time() - cpu0)
            fresh.close()
        out["connector_cpu_per_max_page_ms_incl_transport"] = round(cpu_pull / pulled * 5000
                                                                    * 1000, 1)
        out["cpu_per_1000_records_ms"] = {
            "connector": round(cpu_pull / pulled * 1000 * 1000, 2),
            "plain_requests_json_loop": round(cpu_plain / plain * 1000 * 1000, 2),
            "ratio": round(cpu_pull / cpu_plain, 2)}

        # write-back of K changes
        ids = [r.id for p in connector_for(creds).read(Entity.ACCOUNT, None, ["name"])
               for r in p.records][:1000]
        admin(creds, "DELETE", "requests")
        results = connector.write(Entity.ACCOUNT, [RecordUpdate(i, {"new_customerid": f"c-{i}"})
                                                   for i in ids])
        snap = admin(creds, "GET", "requests")
        out["write_back"] = {"changes": len(ids), "ok": sum(r.ok for r in results),
                             "batch_calls": calls(snap, "$batch"),
                             "all_calls": sum(snap.values()),
                             "minimum": math.ceil(len(ids) / 1000)}
    finally:
        stop.set()
        proc.join(timeout=10)
    if big:
        out["big"] = run_big()
    return out


def run_big(count: int = 250_000) -> dict[str, Any]:
    small = _pull_peak(50_000)
    big = _pull_peak(count)
    big["connector_peak_traced_mb_at_50k"] = small["connector_peak_traced_mb"]
    return big


def _pull_peak(count: int) -> dict[str, Any]:
    proc, stop, info = start(count)
    try:
        connector = connector_for(info["credentials"])
        tracemalloc.start()
        pulled = 0
        for page in connector.read(Entity.ACCOUNT, None, FIELDS):
            pulled += len(page.records)  # pages are dropped as a sync would after storing
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"records": pulled, "connector_peak_traced_mb": round(peak / 2**20, 1),
                "sandbox_rss_mb_for_records": round(info["sandbox_rss_kb"] / 1024, 1),
                "sandbox_process_rss_mb_after_full_pull": round(_rss_kb(str(proc.pid)) / 1024,
                                                                 1),
                "sandbox_serve_max_page_cpu_ms": round(info["serve_page_s"] * 1000, 1)}
    finally:
        stop.set()
        proc.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--big", action="store_true", help="also pull 250,000 records")
    args = parser.parse_args()
    # stdout carries only the JSON result
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    print(json.dumps(run(args.records, args.big), indent=2))


if __name__ == "__main__":
    main()
