"""Store throughput: records/s through apply_page on SQLite and PostgreSQL.

Run: python bench/bench_store.py [--rows 100000] [--page 2000] [--pg-url URL] [--only sqlite]
Three passes per database over opportunities of realistic width (18 canonical fields and
a ~25-field raw payload): first load (all inserts), re-read (all unchanged), and a pass
where every tenth record changed. Besides wall-clock time it reports CPU seconds (this
process, plus the PostgreSQL backend's when the server runs on this host), so the
"records per CPU-second" figure holds on a busy machine too.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

# Lets a plain checkout run this file without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from state import Store
from state.engine import create_store_engine

STAGES = ["Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def opportunity(i: int, rng: random.Random, version: int = 0) -> dict[str, Any]:
    stage = STAGES[(i + version) % len(STAGES)]
    modified = T0 + timedelta(minutes=i + version * 1000)
    amount = Decimal(rng.randint(1_000, 2_000_000)) / 100
    raw = {
        "Id": f"006{i:015d}", "Name": f"Opportunity {i} for Account {i % 5000}",
        "AccountId": f"001{i % 5000:015d}", "Amount": float(amount), "CurrencyIsoCode": "EUR",
        "StageName": stage, "CloseDate": "2026-06-30", "CreatedDate": T0.isoformat(),
        "LastModifiedDate": modified.isoformat(), "LastActivityDate": "2026-02-01",
        "OwnerId": f"005{i % 40:015d}", "Channel_Owner__c": f"dist-{i % 7}",
        "Registered_By__c": f"dist-{i % 7}", "Registration_Status__c": "Active",
        "Registered_At__c": T0.isoformat(), "Registration_Expires__c": "2026-04-01",
        "Description": "Lorem ipsum dolor sit amet " * 3, "Probability": 40, "Type": "New",
        "LeadSource": "Partner", "NextStep": "Send quote", "ForecastCategory": "Pipeline",
        "IsPrivate": False, "Fiscal": "2026 2", "SystemModstamp": modified.isoformat(),
    }
    return {
        "external_id": f"006{i:015d}", "name": raw["Name"], "account_ref": raw["AccountId"],
        "amount": amount, "currency": "EUR", "stage_raw": stage,
        "stage_category": "won" if stage == "Closed Won" else "lost" if stage == "Closed Lost"
        else "open",
        "close_date": date(2026, 6, 30), "created_at": T0, "modified_at": modified,
        "last_activity_at": T0 + timedelta(days=31), "owner_user": raw["OwnerId"],
        "channel_owner": raw["Channel_Owner__c"], "registered_by": raw["Registered_By__c"],
        "registered_at": T0, "registration_expires_at": date(2026, 4, 1),
        "registration_status": "active", "registration_decision": None, "reassign_to": None,
        "vendor_modified_at": modified, "etag": str(version), "raw": raw,
    }


def backend_cpu(pid: int | None) -> float:
    """CPU seconds used so far by a PostgreSQL backend process on this host (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_pass(
    store: Store, rows: list[dict[str, Any]], page: int, label: str, backend: int | None
) -> float:
    run_id = store.start_run(trigger="bench")
    started = time.perf_counter()
    client_started, server_started = time.process_time(), backend_cpu(backend)
    totals = [0, 0, 0]
    for start in range(0, len(rows), page):
        result = store.apply_page(
            connection="sf", entity="opportunity", rows=rows[start : start + page],
            deleted_ids=[], skipped=[], cursor={"offset": start}, run_id=run_id,
            full_refresh=False,
        )
        totals[0] += result.inserted
        totals[1] += result.updated
        totals[2] += result.unchanged
    seconds = time.perf_counter() - started
    client = time.process_time() - client_started
    server = backend_cpu(backend) - server_started
    cpu = client + server
    rate = len(rows) / seconds
    split = f" (ours {client:.2f} + server {server:.2f})" if backend else ""
    print(f"  {label:<22} {len(rows):>7} rows {seconds:6.2f} s wall {rate:>8,.0f} rec/s | "
          f"{cpu:5.2f} CPU-s{split} {len(rows) / cpu:>7,.0f} rec/CPU-s"
          f"  [ins {totals[0]}, upd {totals[1]}, same {totals[2]}]")
    return rate


def bench(url: str, rows_n: int, page: int) -> None:
    rng = random.Random(7)
    first = [opportunity(i, rng) for i in range(rows_n)]
    rng = random.Random(7)
    tenth = [opportunity(i, rng, version=1 if i % 10 == 0 else 0) for i in range(rows_n)]
    # One pooled connection, so the PostgreSQL backend measured is the one doing the work.
    store = Store(create_store_engine(url, pool_size=1, max_overflow=0))
    try:
        store.migrate()
        backend = None
        if store.dialect == "postgresql":
            with store.engine.connect() as conn:
                backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        print(f"{store.dialect}: page size {page}, load average {os.getloadavg()[0]:.1f}")
        run_pass(store, first, page, "first load", backend)
        run_pass(store, first, page, "re-read, unchanged", backend)
        run_pass(store, tenth, page, "re-read, 10% changed", backend)
        started = time.perf_counter()
        loaded = store.load_opportunities()
        seconds = time.perf_counter() - started
        print(f"  {'load_opportunities':<22} {len(loaded):>7} rows {seconds:7.2f} s "
              f"{len(loaded) / seconds:>9,.0f} rec/s")
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=2000)
    parser.add_argument("--pg-url", default=os.environ.get(
        "CHANNELSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as tmp:
            bench(f"sqlite:///{Path(tmp) / 'bench.db'}", args.rows, args.page)
    if args.only != "sqlite":
        admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        name = f"cs_bench_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
            bench(url, args.rows, args.page)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
