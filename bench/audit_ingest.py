"""Audit ingest rate: NATS JetStream -> control plane -> PostgreSQL, batched vs one row at a time.

Publishes N audit records (as gateways do: subject ``<ns>.audit.<gateway>``, message id
``<gateway>:<seq>``) to a fresh namespace, then times the control plane's ingest
(``isthmus.control.StreamIngest``: durable pull consumer, parse, one ``INSERT … SELECT FROM
unnest(…) ON CONFLICT DO NOTHING`` per batch, commit, then acknowledge) until every record is
in a fresh PostgreSQL database. The baseline, in the same run, is the same pipeline with a
batch of one: one INSERT and one commit per record. Each run is counted: the table must hold
exactly the records published. Writes bench/results/audit_ingest.json.

    .venv/bin/python bench/audit_ingest.py [--records 100000] [--baseline-records 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path

import nats
import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isthmus.control import ControlConfig, ControlPlane, StreamIngest  # noqa: E402
from isthmus.control.signing import load_or_create_signing_key  # noqa: E402
from isthmus.control.wire import audit_row  # noqa: E402
from isthmus.mesh.protocol import Names  # noqa: E402
from isthmus.mesh.streams import ensure_streams  # noqa: E402

RESULT = ROOT / "bench" / "results" / "audit_ingest.json"
PG_ADMIN = os.environ.get(
    "ISTHMUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
NATS_URL = os.environ.get("ISTHMUS_TEST_NATS_URL", "nats://127.0.0.1:4222")
GATEWAYS = 4
TARGET_PER_S = 20_000


def record(seq: int) -> bytes:
    return orjson.dumps(
        {
            "seq": seq,
            "at": f"2026-01-01T00:{(seq // 60) % 60:02d}:{seq % 60:02d}.000000+00:00",
            "tenant": f"tenant-{seq % 7}",
            "direction": "input",
            "category": "pii:email",
            "action": "redact",
            "rule": "pii.email",
            "location": "messages[0].content",
            "score": 0.93,
            "content_hash": secrets.token_hex(32),
            "prev_hash": "0" * 64,
            "record_hash": secrets.token_hex(32),
        }
    )


async def publish(js: object, names: Names, count: int) -> float:
    started = time.perf_counter()
    per_gateway = count // GATEWAYS
    for g in range(GATEWAYS):
        gateway = f"gw-{g}"
        subject = names.audit_subject(gateway)
        acks = []
        for seq in range(1, per_gateway + 1):
            acks.append(
                await js.publish_async(  # type: ignore[attr-defined]
                    subject, record(seq), headers={"Nats-Msg-Id": names.msg_id(gateway, seq)}
                )
            )
            if len(acks) >= 4000:
                await asyncio.gather(*acks)
                acks.clear()
        await asyncio.gather(*acks)
    return time.perf_counter() - started


def fresh_database() -> tuple[str, str]:
    name = f"isthmus_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


async def run(count: int, batch: int) -> dict[str, object]:
    """Publish ``count`` records to a fresh namespace; ingest them with ``batch``; time it."""
    count -= count % GATEWAYS
    names = Names(f"bench{secrets.token_hex(4)}")
    db_name, db_url = fresh_database()
    key, _ = load_or_create_signing_key(Path(tempfile.mkdtemp()) / "k.pem")
    plane = ControlPlane.open(ControlConfig(db_url=db_url, namespace=names.namespace), key)
    nc = await nats.connect(NATS_URL, max_outstanding_pings=10)
    js = nc.jetstream()
    try:
        await ensure_streams(js, names)
        publish_s = await publish(js, names, count)
        ingest = StreamIngest(
            js,
            stream=names.audit_stream,
            subjects=names.audit_subjects,
            durable="bench",
            parse=lambda subject, data: [audit_row(subject, data)],
            write=plane.records.insert_audit,
            batch=batch,
            ack_wait_s=60,
        )
        started = time.perf_counter()
        stop = asyncio.Event()
        running = asyncio.create_task(ingest.run(stop, idle_timeout_s=0.5))
        deadline = started + 600
        while ingest.stored_total < count and time.perf_counter() < deadline:
            await asyncio.sleep(0.002)
        ingest_s = time.perf_counter() - started
        stop.set()
        await running
        stored = plane.records.count_audit()
        await nc.jetstream().delete_stream(names.audit_stream)
        for stream in (names.bundle_stream, names.telemetry_stream):
            await js.delete_stream(stream)
        await js.delete_key_value(names.status_bucket)
    finally:
        await nc.close()
        plane.close()
        drop_database(db_name)
    return {
        "batch": batch,
        "records": count,
        "stored": stored,
        "exactly_once": stored == count,
        "publish_s": round(publish_s, 3),
        "ingest_s": round(ingest_s, 3),
        "records_per_s": round(count / ingest_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--baseline-records", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    batched = asyncio.run(run(args.records, args.batch))
    print(f"batched ({args.batch}/batch): {batched['records_per_s']:,} records/s "
          f"({batched['records']:,} in {batched['ingest_s']} s, stored {batched['stored']:,})")  # fmt: skip
    baseline = asyncio.run(run(args.baseline_records, 1))
    print(f"baseline (1 insert + commit per record): {baseline['records_per_s']:,} records/s "
          f"({baseline['records']:,} in {baseline['ingest_s']} s)")  # fmt: skip
    speedup = float(batched["records_per_s"]) / float(baseline["records_per_s"])  # type: ignore[arg-type]
    with psycopg.connect(PG_ADMIN) as connection:
        server = connection.execute("SHOW server_version").fetchone()
    result = {
        "what": "audit records ingested from NATS JetStream into PostgreSQL per second "
        "(pull consumer, parse, batched INSERT ... ON CONFLICT DO NOTHING, commit, then ack)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "postgresql": server[0] if server else None,
            "note": "NATS, PostgreSQL and the ingest share the same machine",
        },
        "gateways": GATEWAYS,
        "target_records_per_s": TARGET_PER_S,
        "batched": batched,
        "baseline_one_insert_per_record": baseline,
        "speedup": round(speedup, 1),
        "meets_target": bool(batched["exactly_once"])
        and int(batched["records_per_s"]) >= TARGET_PER_S,  # type: ignore[call-overload]
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"speed-up {speedup:.1f}x; target {TARGET_PER_S:,}/s met: {result['meets_target']}; "
          f"wrote {RESULT.relative_to(ROOT)}")  # fmt: skip


if __name__ == "__main__":
    main()
