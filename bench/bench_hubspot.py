"""Benchmarks for the HubSpot sandbox and connector; prints one JSON object.

    python bench/bench_hubspot.py [--records 20000] [--writes 1000] [--big]

The sandbox runs in a child process so that CPU figures of this process belong to the
connector (or to the plain requests loop it is compared with).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
import structlog
from hubspot import HubSpot

from connectors.base import Entity, RecordUpdate
from connectors.http import QuotaGovernor, RetryPolicy
from connectors.hubspot import HubSpotConnector

ACCOUNT_FIELDS = ["name", "domain", "country", "duns_number", "vat_id", "channel_owner",
                  "hubspot_owner_id", "partner_id", "channel_conflict_reason"]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(records: int, deals: int, conn: Any) -> None:
    from werkzeug.test import Client

    from sandbox.hubspot import HubSpotSandbox
    from sandbox.serving import serve

    gc.collect()
    before = rss_mb()
    app = HubSpotSandbox(burst_limit=None, daily_limit=None, search_per_second=None)
    account = app.account
    start = datetime(2025, 1, 1, tzinfo=UTC)
    company_ids = []
    for n in range(records):
        company_ids.append(account.create("companies", {
            "name": f"Company {n} GmbH", "domain": f"company{n}.example", "country": "Germany",
            "duns_number": f"{n:09d}", "vat_id": f"DE{n:09d}", "channel_owner": "D-1",
            "partner_id": None, "channel_conflict_reason": None,
        }, modified_at=start + timedelta(seconds=n)))
    for n in range(deals):
        account.create("deals", {"dealname": f"Deal {n}", "amount": "1000", "dealstage":
                                 "qualifiedtobuy", "deal_currency_code": "EUR"},
                       modified_at=start + timedelta(seconds=n),
                       companies=[company_ids[n % len(company_ids)]])
    gc.collect()
    sandbox_mb = rss_mb() - before

    # serving one max-size search page (200 records), in-process through WSGI
    client = Client(app)
    window = {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}
    body: dict[str, Any] = {
        "filterGroups": [{"filters": [window]}],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ACCOUNT_FIELDS, "limit": 200}
    headers = {"Authorization": f"Bearer {app.token}"}
    timings = []
    for i in range(30):
        window["value"] = str(i * 1000)
        t0 = time.perf_counter()
        answer = client.post("/crm/v3/objects/companies/search", json=body, headers=headers)
        timings.append(time.perf_counter() - t0)
        assert answer.status_code == 200
    running = serve(app)
    conn.send({"base_url": running.base_url, "token": app.token, "sandbox_mb": sandbox_mb,
               "serve_page_ms": sorted(timings)[len(timings) // 2] * 1000})
    conn.recv()
    running.stop()


def start_sandbox(records: int, deals: int) -> tuple[dict[str, Any], Any, Any]:
    parent, kid = mp.Pipe()
    proc = mp.get_context("fork").Process(target=child, args=(records, deals, kid), daemon=True)
    proc.start()
    info = parent.recv()
    return info, parent, proc


def stop_sandbox(parent: Any, proc: Any) -> None:
    parent.send("stop")
    proc.join(10)


def connector(info: dict[str, Any]) -> HubSpotConnector:
    return HubSpotConnector(
        client=HubSpot(access_token=info["token"], host=info["base_url"]),
        retry=RetryPolicy(), search_per_second=None,
        quota=QuotaGovernor(unit="requests", window="day", limit=None))


def calls(info: dict[str, Any], reset: bool = False) -> dict[str, int]:
    url = info["base_url"] + "/__sandbox/requests"
    answer = requests.delete(url, timeout=10) if reset else requests.get(url, timeout=10)
    return dict(answer.json())


def total(snapshot: dict[str, int], needle: str = "") -> int:
    return sum(n for k, n in snapshot.items() if needle in k)


def bench_pull(info: dict[str, Any], records: int, deals: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    conn = connector(info)
    bodies: list[dict[str, Any]] = []
    original = conn.api.search

    def recording(object_type: str, request: Any) -> dict[str, Any]:
        bodies.append(dict(request))
        return original(object_type, request)

    conn.api.search = recording  # type: ignore[method-assign]  # capture bodies to replay
    calls(info, reset=True)
    t0, c0 = time.perf_counter(), time.thread_time()
    pulled = sum(len(p.records) for p in conn.read(Entity.ACCOUNT, None, ACCOUNT_FIELDS))
    cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
    snap = calls(info)
    minimum = math.ceil(records / 200)
    out["full_pull_accounts"] = {
        "records": pulled, "search_calls": total(snap, "/search"),
        "all_calls": total(snap), "minimum_list_calls": minimum,
        "overhead": {k: n for k, n in snap.items() if "/search" not in k},
        "overhead_pct": round(100 * (total(snap, "/search") - minimum) / minimum, 2),
        "wall_s": round(wall, 2), "connector_cpu_ms_per_1000": round(1000 * cpu / pulled * 1000, 1),
    }
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {info['token']}"
    c0 = time.thread_time()
    decoded = 0
    for body in bodies:
        decoded += len(session.post(info["base_url"] + "/crm/v3/objects/companies/search",
                                    json=body, timeout=60).json()["results"])
    loop_cpu = time.thread_time() - c0
    out["plain_requests_loop_cpu_ms_per_1000"] = round(1000 * loop_cpu / decoded * 1000, 1)
    out["connector_vs_plain_loop"] = round(cpu / loop_cpu, 2)
    out["connector_process_page_ms"] = round(1000 * cpu / max(1, len(bodies)), 2)

    calls(info, reset=True)
    pulled = sum(len(p.records) for p in conn.read(Entity.OPPORTUNITY, None,
                                                   ["dealname", "amount", "associatedcompanyid"]))
    snap = calls(info)
    out["full_pull_deals"] = {
        "records": pulled, "search_calls": total(snap, "/search"),
        "association_calls": total(snap, "/associations"), "all_calls": total(snap),
        "minimum_list_calls": math.ceil(deals / 200),
        "minimum_association_calls": math.ceil(deals / 1000),
        "overhead": {k: n for k, n in snap.items()
                     if "/search" not in k and "/associations" not in k},
    }
    # a second pull of each with the same connector: the properties come from its cache
    for entity, label, fields in ((Entity.ACCOUNT, "second_pull_accounts", ACCOUNT_FIELDS),
                                  (Entity.OPPORTUNITY, "second_pull_deals",
                                   ["dealname", "amount", "associatedcompanyid"])):
        calls(info, reset=True)
        pulled = sum(len(p.records) for p in conn.read(entity, None, fields))
        snap = calls(info)
        out[label] = {"records": pulled, "search_calls": total(snap, "/search"),
                      "association_calls": total(snap, "/associations"),
                      "all_calls": total(snap),
                      "overhead": {k: n for k, n in snap.items()
                                   if "/search" not in k and "/associations" not in k}}
    return out


def bench_write(info: dict[str, Any], writes: int) -> dict[str, Any]:
    conn = connector(info)
    ids = [r.id for p in conn.read(Entity.ACCOUNT, None, ["name"]) for r in p.records][:writes]
    calls(info, reset=True)
    results = conn.write(Entity.ACCOUNT, [
        RecordUpdate(id=i, fields={"channel_conflict_reason": f"bench {n}"})
        for n, i in enumerate(ids)])
    snap = calls(info)
    return {"changes": len(ids), "ok": sum(r.ok for r in results),
            "batch_calls": total(snap, "/batch/update"), "minimum": math.ceil(len(ids) / 100)}


def bench_memory(info: dict[str, Any]) -> float:
    conn = connector(info)
    tracemalloc.start()
    for _ in conn.read(Entity.ACCOUNT, None, ACCOUNT_FIELDS):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return round(peak / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--writes", type=int, default=1_000)
    parser.add_argument("--big", action="store_true", help="also pull 250,000 records")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

    info, parent, proc = start_sandbox(args.records, args.records)
    result: dict[str, Any] = {"records": args.records, "sandbox_mb": round(info["sandbox_mb"], 1),
                              "sandbox_serve_max_page_ms": round(info["serve_page_ms"], 2)}
    try:
        result.update(bench_pull(info, args.records, args.records))
        result["write_back"] = bench_write(info, args.writes)
        result["pull_peak_traced_mb"] = bench_memory(info)
    finally:
        stop_sandbox(parent, proc)
    if args.big:
        info, parent, proc = start_sandbox(250_000, 0)
        try:
            result["big"] = {"records": 250_000, "sandbox_mb": round(info["sandbox_mb"], 1),
                             "sandbox_serve_max_page_ms": round(info["serve_page_ms"], 2),
                             "pull_peak_traced_mb": bench_memory(info)}
        finally:
            stop_sandbox(parent, proc)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
