"""Mapping throughput: records/s through ``CompiledMapping.to_canonical`` on one core.

Run: python bench/bench_mapping.py [--records 200000] [--vendor salesforce]
Uses the vendor's default mapping from config/mappings/ (opportunities: 18 canonical fields
with value maps, decimals, dates and ISO datetimes). Target: well over 50,000 records/s.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.loader import DEFAULT_MAPPINGS_DIR
from config.mapping_compiler import load_mapping_file

STAGES = ["Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]
STATUSES = ["Pending", "Active", "Expiring", "Expired", None]


def salesforce_opportunity(rng: random.Random, index: int) -> dict[str, Any]:
    day = rng.randint(1, 28)
    return {
        "Name": f"Opportunity {index}",
        "AccountId": f"001{index:015d}",
        "Amount": round(rng.uniform(1_000, 500_000), 2),
        "CurrencyIsoCode": "EUR",
        "StageName": rng.choice(STAGES),
        "CloseDate": f"2025-{rng.randint(1, 12):02d}-{day:02d}",
        "CreatedDate": f"2024-03-{day:02d}T10:11:12.000+0000",
        "SystemModstamp": f"2025-01-{day:02d}T08:09:10.000+0000",
        "LastActivityDate": f"2025-01-{day:02d}T00:00:00.000+0000",
        "Owner.Email": "rep@example.com",
        "Channel_Owner__c": rng.choice(["direct", "nordic-systems", None]),
        "Partner_Account__r.Distributor_Id__c": rng.choice(["alpine-it", None]),
        "Registered_At__c": f"2024-11-{day:02d}T09:00:00.000+0000",
        "Registration_Expires__c": f"2025-02-{day:02d}",
        "Registration_Status__c": rng.choice(STATUSES),
        "Registration_Decision__c": None,
        "Reassign_To__c": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--vendor", default="salesforce")
    args = parser.parse_args()
    path = DEFAULT_MAPPINGS_DIR / f"{args.vendor}.yaml"
    mapping, doc = load_mapping_file(path, str(path), args.vendor)
    if mapping is None:
        sys.exit("\n".join(str(p) for p in doc.problems))
    if args.vendor != "salesforce":
        sys.exit("only the salesforce record generator exists so far")
    rng = random.Random(7)
    records = [salesforce_opportunity(rng, i) for i in range(args.records)]
    convert = mapping.entity("opportunity").to_canonical
    fields = len(mapping.entity("opportunity").fields)
    convert(records[0])  # warm up
    started = time.perf_counter()
    for record in records:
        convert(record)
    seconds = time.perf_counter() - started
    rate = args.records / seconds
    print(
        f"to_canonical: {args.records} {args.vendor} opportunities x {fields} fields in "
        f"{seconds:.2f} s = {rate:,.0f} records/s ({seconds / args.records * 1e6:.1f} us/record)"
    )


if __name__ == "__main__":
    main()
