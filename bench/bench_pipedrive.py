"""Pipedrive benchmarks: serving vs processing a max page, API calls for a full pull and a
write-back against the vendor minimum, connector CPU per 1,000 records against a plain
requests loop, and memory (connector peak while pulling, sandbox size).

The sandbox runs in a child process so the client's CPU and memory figures are its own.
Run: ``python bench/bench_pipedrive.py [--records N] [--writes K] [--big]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import requests
import structlog
from werkzeug.test import EnvironBuilder

from connectors.base import Entity, RecordUpdate
from connectors.http import Pacer, QuotaGovernor, RetryPolicy
from connectors.pipedrive import PipedriveConnector
from connectors.pipedrive.connector import MAX_PAGE
from sandbox.pipedrive import PipedriveSandbox
from sandbox.serving import serve

DEAL_FIELDS = [
    "title", "org_id", "value", "currency", "stage_id", "status", "expected_close_date",
    "add_time", "update_time", "Last partner activity", "owner_id", "Channel owner",
    "Registered by", "Registration date", "Registration expires", "Registration status",
    "Registration decision", "Reassign to",
]


def _rss_kb() -> int:
    with open(f"/proc/{os.getpid()}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _seed(app: PipedriveSandbox, deals: int) -> None:
    company = app.company
    from sandbox.pipedrive.seed import ensure_default_fields

    ensure_default_fields(company)
    company.add_user("Bench Admin", "bench@example.com")
    orgs = max(1, deals // 10)
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    for i in range(orgs):
        company.create("organizations", company.api_values("organizations", {
            "name": f"Org {i} GmbH", "website": f"org{i}.example",
            "address": {"value": "Germany", "country": "Germany"}, "DUNS number": f"{i:09d}",
        }), add_ts=start + i, update_ts=start + i)
    statuses = ["Pending", "Active", "Expiring", "Expired"]
    for i in range(deals):
        stamp = start + orgs + i // 3  # ties: three deals per second
        company.create("deals", company.api_values("deals", {
            "title": f"Deal {i}", "org_id": 1 + i % orgs, "value": 1000.0 + i,
            "currency": "EUR", "expected_close_date": "2026-09-30",
            "Registered by": "D-7", "Registration date": "2026-02-01",
            "Registration expires": "2026-05-01", "Registration status": statuses[i % 4],
            "Last partner activity": "2026-03-01", "Channel owner": "D-7",
        }), add_ts=stamp, update_ts=stamp)


def _serve_child(deals: int, conn: Any) -> None:
    before = _rss_kb()
    app = PipedriveSandbox(burst_limit=1_000_000, daily_tokens=100_000_000)
    _seed(app, deals)
    after = _rss_kb()
    # time to build one max-size page inside the app (no network)
    query: dict[str, str] = {"limit": str(MAX_PAGE), "sort_by": "update_time"}
    builder = EnvironBuilder(path="/api/v2/deals", headers=[("x-api-token", app.api_token)],
                             query_string=query)
    timings = []
    for _ in range(20):
        environ = builder.get_environ()
        started = time.perf_counter()
        body = b"".join(app(environ, lambda *a, **k: None))
        timings.append(time.perf_counter() - started)
    running = serve(app)
    conn.send({"base_url": running.base_url, "api_token": app.api_token,
               "rss_seed_mb": round((after - before) / 1024, 1),
               "serve_page_ms": round(sorted(timings)[len(timings) // 2] * 1000, 2),
               "page_bytes": len(body)})
    conn.recv()  # wait until the parent is done
    running.stop()


def _connector(base_url: str, token: str) -> PipedriveConnector:
    return PipedriveConnector(
        session=requests.Session(), base_url=base_url, api_token=token,
        retry=RetryPolicy(), quota=QuotaGovernor(unit="tokens", window="day", limit=None),
        pacer=Pacer(),
    )


def _requests(base_url: str) -> dict[str, int]:
    counts: dict[str, int] = requests.get(base_url + "/__sandbox/requests", timeout=30).json()
    return counts


def _reset(base_url: str) -> None:
    requests.delete(base_url + "/__sandbox/requests", timeout=30)


def _plain_loop(base_url: str, token: str, params: dict[str, Any]) -> tuple[float, int]:
    session = requests.Session()
    cursor, count = None, 0
    started = time.process_time()
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = session.get(base_url + "/api/v2/deals", params=query,
                           headers={"x-api-token": token}, timeout=60).json()
        count += len(body["data"])
        cursor = body["additional_data"]["next_cursor"]
        if not cursor:
            return time.process_time() - started, count


def bench(records: int, writes: int) -> dict[str, Any]:
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_serve_child, args=(records, child))
    proc.start()
    info = parent.recv()
    base, token = info["base_url"], info["api_token"]
    out: dict[str, Any] = {"records": records, "sandbox_seed_rss_mb": info["rss_seed_mb"],
                           "sandbox_serve_max_page_ms": info["serve_page_ms"],
                           "max_page_bytes": info["page_bytes"]}
    try:
        connector = _connector(base, token)
        # connector processing of one max page: decode + field extraction
        meta = connector.fields_of(Entity.OPPORTUNITY)
        from connectors.pipedrive.cursor import Feed
        from connectors.pipedrive.schema import RowDecoder

        raw = requests.get(base + "/api/v2/deals", params={"limit": MAX_PAGE},
                           headers={"x-api-token": token}, timeout=60).content
        plan = RowDecoder(meta, [*DEAL_FIELDS, "org_id"])
        runs = []
        for _ in range(15):
            started = time.perf_counter()
            data = orjson.loads(raw)["data"]
            connector._decode(data, Feed(), plan, None, dedupe=False, deleted=False)
            runs.append(time.perf_counter() - started)
        out["connector_process_max_page_ms"] = round(sorted(runs)[len(runs) // 2] * 1000, 2)

        puller = _connector(base, token)  # a new connector: its first pull lists the fields
        _reset(base)
        started_cpu = time.process_time()
        started_wall = time.perf_counter()
        pulled = 0
        for page in puller.read(Entity.OPPORTUNITY, None, DEAL_FIELDS):
            pulled += len(page.records)
        cpu = time.process_time() - started_cpu
        out["full_pull_wall_s"] = round(time.perf_counter() - started_wall, 2)
        counts = _requests(base)
        out["full_pull_records"] = pulled
        out["full_pull_calls"] = sum(counts.values())
        out["full_pull_list_calls"] = counts.get("GET /api/v2/deals", 0)
        out["full_pull_min_calls"] = math.ceil(records / MAX_PAGE)
        out["full_pull_overhead_calls"] = out["full_pull_calls"] - out["full_pull_min_calls"]
        _reset(base)  # a second pull with the same connector: fields from its cache
        out["second_pull_records"] = sum(len(p.records) for p in puller.read(
            Entity.OPPORTUNITY, None, DEAL_FIELDS))
        counts = _requests(base)
        out["second_pull_calls"] = sum(counts.values())
        out["second_pull_overhead"] = {k: n for k, n in counts.items()
                                       if k != "GET /api/v2/deals"}
        plain_cpu, plain_count = _plain_loop(base, token, {"limit": MAX_PAGE,
                                                           "sort_by": "update_time"})
        out["connector_cpu_ms_per_1000"] = round(cpu / pulled * 1e6, 2)
        out["plain_loop_cpu_ms_per_1000"] = round(plain_cpu / plain_count * 1e6, 2)
        out["cpu_ratio_connector_vs_plain"] = round(cpu / plain_cpu, 2)

        _reset(base)
        updates = [RecordUpdate(str(i), {"Channel conflict reason": f"bench {i}",
                                         "Registration status": "Expired"})
                   for i in range(1, writes + 1)]
        started_wall = time.perf_counter()
        results = connector.write(Entity.OPPORTUNITY, updates)
        out["write_wall_s"] = round(time.perf_counter() - started_wall, 2)
        out["write_ok"] = sum(r.ok for r in results)
        out["write_calls"] = sum(_requests(base).values())
        out["write_min_calls"] = writes
        out["budget_tokens_used"] = connector.budget().used
    finally:
        parent.send("done")
        proc.join()
    return out


def bench_memory(records: int) -> dict[str, Any]:
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_serve_child, args=(records, child))
    proc.start()
    info = parent.recv()
    try:
        connector = _connector(info["base_url"], info["api_token"])
        connector.fields_of(Entity.OPPORTUNITY)
        tracemalloc.start()
        pulled, peaks = 0, []
        for page in connector.read(Entity.OPPORTUNITY, None, DEAL_FIELDS):
            pulled += len(page.records)
            if pulled % 50_000 < MAX_PAGE:
                peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    finally:
        parent.send("done")
        proc.join()
    return {"big_records": pulled, "sandbox_rss_for_big_mb": info["rss_seed_mb"],
            "connector_peak_traced_mb": round(peak, 1),
            "connector_peak_mb_every_50k": [round(p, 1) for p in peaks],
            "client_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--writes", type=int, default=1_000)
    parser.add_argument("--big", action="store_true", help="also pull 250,000 records")
    args = parser.parse_args()
    # stdout carries only the JSON result; page logs at info would cost CPU and bury it
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    result = bench(args.records, args.writes)
    if args.big:
        result.update(bench_memory(250_000))
    result["measured_at"] = (datetime.now(UTC) - timedelta(0)).isoformat(timespec="seconds")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
