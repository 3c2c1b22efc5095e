"""The distributed deployment measured: policy propagation, audit ingest, shared routing state.

1. **Policy propagation** to N gateway processes (N = 3, 10, 30 by default): one control plane
   (``isthmus control``, PostgreSQL in a fresh database, a private ``nats-server -js``), one
   engine emulator, and N ``isthmus gateway`` processes (``--no-guard --no-log-decisions``, a
   three-site fabric, started in staggered batches and waited for). Each push changes the guard
   policy through the admin API and POSTs a bundle. Two clocks: the gateways' own ``applied_at``
   (status bucket) against the bundle's ``published_at`` — per push, the median gateway and the
   last one — and polling: from the admin's POST until a poll of the status bucket sees every
   gateway on the new version (includes building and signing the bundle and the poll period).
   Median and max over ``--pushes`` pushes. The gateways are the same processes as N grows.
2. **Audit ingest** into PostgreSQL: ``bench/audit_ingest.py``'s ``run`` (batched, and one
   INSERT + commit per record as the baseline), on the machine's NATS.
3. **Shared routing state**: ``bench/shared_state.py``'s ``run`` with two replicas on local
   state and on Redis, alternated in this process; the per-request gateway path compared.

    .venv/bin/python bench/distributed.py [--gateways 3,10,30] [--pushes 7]

Prints a table; writes bench/results/distributed.json. Everything on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import audit_ingest  # noqa: E402
import shared_state as shared_state_bench  # noqa: E402

from isthmus.control.signing import load_or_create_signing_key, public_key_path  # noqa: E402
from isthmus.gateway import Gateway, GatewayConfig  # noqa: E402
from isthmus.mesh.protocol import GatewayStatus, Names  # noqa: E402
from isthmus.mesh.shared_state import shared_state_from_url  # noqa: E402
from isthmus.routing import RouteRequest  # noqa: E402
from tests.e2e.deployment import (  # noqa: E402
    GatewayProcess,
    Processes,
    fabric_yaml,
    free_port,
    start_control,
    start_emulator,
    start_gateway,
    start_nats,
    wait_for_gateways,
)

RESULT = ROOT / "bench" / "results" / "distributed.json"
SITES = ("paris", "frankfurt", "ashburn")
START_BATCH = 5  # gateways started together, then waited for, to keep start-up CPU in check


# -- 1. policy propagation -------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class StatusPoller:
    """One NATS connection reading every gateway's status entry, all at once, in a loop."""

    def __init__(self, url: str, names: Names) -> None:
        self.url, self.names = url, names

    async def __aenter__(self) -> StatusPoller:
        self.nc = await nats.connect(self.url)
        self.kv = await self.nc.jetstream().key_value(self.names.status_bucket)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()

    async def read(self, gateway_ids: list[str]) -> list[GatewayStatus | None]:
        async def one(key: str) -> GatewayStatus | None:
            try:
                entry = await self.kv.get(key)
            except Exception:
                return None
            return GatewayStatus.model_validate_json(entry.value) if entry.value else None

        return list(await asyncio.gather(*(one(k) for k in gateway_ids)))

    async def until_version(
        self, gateway_ids: list[str], version: int, timeout_s: float = 60
    ) -> tuple[float, list[GatewayStatus]]:
        """(unix time when a poll first saw every gateway on ``version``, their statuses)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = await self.read(gateway_ids)
            if all(s is not None and s.bundle_version == version for s in found):
                return time.time(), [s for s in found if s is not None]
            if time.monotonic() > deadline:
                behind = [k for k, s in zip(gateway_ids, found, strict=True)
                          if s is None or s.bundle_version != version]  # fmt: skip
                raise AssertionError(f"bundle v{version} not applied by {behind}")
            await asyncio.sleep(0.002)


def push(control: Any, n: int) -> tuple[int, float, float]:
    """Change the guard policy, publish a bundle: (version, asked at, published at)."""
    admin = control.client()
    policy = admin.get("/v1/policy/guard").json()
    policy["min_score"] = round(0.5 + 0.01 * (n % 40), 2)
    assert admin.put("/v1/policy/guard", json=policy).status_code == 200
    asked_at = time.time()
    answer = admin.post("/v1/bundles")
    bundle = answer.json()["bundle"]
    assert bundle["state"] == "published", answer.text
    return bundle["version"], asked_at, datetime.fromisoformat(bundle["published_at"]).timestamp()


def propagation(counts: list[int], pushes: int, work: Path) -> list[dict[str, Any]]:
    procs = Processes(work / "logs")
    db_name, db_url = audit_ingest.fresh_database()
    names = Names(f"bench{secrets.token_hex(4)}")
    results: list[dict[str, Any]] = []
    try:
        ports = {site: free_port() for site in SITES}
        fabric = work / "fabric.yaml"
        fabric.write_text(fabric_yaml(ports, ["bank"]))
        nats_url = start_nats(procs, free_port(), work / "jetstream")
        key = work / "signing.pem"
        load_or_create_signing_key(key)
        control = start_control(
            procs, db_url=db_url, nats_url=nats_url, namespace=names.namespace, port=free_port(),
            signing_key=key, admin_token="adm-" + secrets.token_hex(8),
            operator_token="op-" + secrets.token_hex(8),
        )  # fmt: skip
        start_emulator(procs, fabric, ports.values(), timing="none")
        admin = control.client()
        assert admin.put("/v1/fabric", json={"yaml": fabric.read_text()}).status_code == 200
        gateways: list[GatewayProcess] = []
        pushed = 0
        for count in counts:
            while len(gateways) < count:
                batch: list[GatewayProcess] = []
                for _ in range(min(START_BATCH, count - len(gateways))):
                    n = len(gateways) + len(batch)
                    gateway_id = f"gw-{n:02d}"
                    gateway = start_gateway(
                        procs, gateway_id=gateway_id, site=SITES[n % len(SITES)],
                        fabric=fabric, nats_url=nats_url, namespace=names.namespace,
                        trusted_key=public_key_path(key), state_dir=work / gateway_id,
                        guard=False, wait=False,
                    )  # fmt: skip
                    batch.append(gateway)
                wait_for_gateways(procs, batch, timeout_s=120)
                gateways.extend(batch)
            ids = [g.gateway_id for g in gateways]
            rows = asyncio.run(_pushes(control, nats_url, names, ids, pushes, pushed))
            pushed += pushes
            memory = sum(rss_mb(procs.children[i].process.pid) for i in ids)
            results.append(_summary(count, rows, memory))
            print(_line(results[-1]), flush=True)
    except BaseException:
        print(procs.tails(15), file=sys.stderr)
        raise
    finally:
        procs.close()
        audit_ingest.drop_database(db_name)
    return results


async def _pushes(
    control: Any, url: str, names: Names, ids: list[str], pushes: int, first: int
) -> list[dict[str, float]]:
    rows = []
    async with StatusPoller(url, names) as poller:
        # a push first that every gateway (some just started) applies before timing starts
        version, *_ = await asyncio.to_thread(push, control, first)
        await poller.until_version(ids, version, timeout_s=120)
        for n in range(pushes):
            await asyncio.sleep(0.3)  # let the heartbeats of the last push settle
            version, asked_at, published_at = await asyncio.to_thread(push, control, first + n + 1)
            seen_at, found = await poller.until_version(ids, version)
            lags = sorted(float(s.applied_at or 0.0) - published_at for s in found)
            rows.append(
                {
                    "publish_s": published_at - asked_at,
                    "applied_median_s": statistics.median(lags),
                    "applied_last_s": lags[-1],
                    "polled_all_s": seen_at - asked_at,
                }
            )
    return rows


def _summary(count: int, rows: list[dict[str, float]], memory_mb: float) -> dict[str, Any]:
    def ms(key: str) -> dict[str, float]:
        values = [r[key] * 1000 for r in rows]
        return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}

    return {
        "gateways": count,
        "pushes": len(rows),
        "publish_ms": ms("publish_s"),
        "applied_median_gateway_ms": ms("applied_median_s"),
        "applied_last_gateway_ms": ms("applied_last_s"),
        "polled_all_applied_ms": ms("polled_all_s"),
        "gateways_rss_mb": round(memory_mb),
    }


def _line(r: dict[str, Any]) -> str:
    def pair(key: str) -> str:
        return f"{r[key]['median']:7.1f} {r[key]['max']:7.1f}"

    return (
        f"{r['gateways']:9d} {pair('applied_median_gateway_ms')} {pair('applied_last_gateway_ms')}"
        f" {pair('polled_all_applied_ms')} {r['gateways_rss_mb']:8d}"
    )


# -- 3. shared routing state -----------------------------------------------------------------


def shared_overhead(requests_per_run: int, reps: int, rate: float) -> dict[str, Any]:
    """Two replicas, local state then Redis, alternated (bench/shared_state.py's ``run``)."""
    sb = shared_state_bench
    fabric, tenant = sb.fleet_fabric(50)
    site = next(iter(fabric.sites))
    rows = [json.loads(line) for line in sb.TRACE.read_text().splitlines()][:requests_per_run]
    requests = []
    for row in rows:
        request = RouteRequest(
            model="chat", data_class="public", gateway_site=site,
            prompt_tokens=row["input_length"], max_output_tokens=row["output_length"],
            block_hashes=sb.index_hashes(row["hash_ids"], row["input_length"]),
            tenant=tenant.name, deadline_ms=1e9,
        )  # fmt: skip
        requests.append(request)
    config = GatewayConfig(
        site=site, health_interval_s=0, log_decisions=False,
        index_block_tokens=sb.INDEX_BLOCK_TOKENS,
    )  # fmt: skip
    local, shared = sb.Samples(), sb.Samples()
    window, period = 32, 0.05
    namespaces: list[str] = []
    gc.freeze()

    async def alternate() -> None:
        for _ in range(reps):
            gateways = [Gateway(fabric, config) for _ in range(2)]
            await sb.run(gateways, None, tenant, requests, rate, window, period, local)
            namespace = f"bench-distributed-{uuid.uuid4().hex[:8]}"
            namespaces.append(namespace)
            states = [
                shared_state_from_url(sb.REDIS_URL, site, namespace, sync_period_s=period)
                for _ in range(2)
            ]
            gateways = [Gateway(fabric, config, shared=state) for state in states]
            for gateway, state in zip(gateways, states, strict=True):
                state.fleet.attach(gateway.view.fleet)
                state.ledger.deferred = True  # as a started gateway: settle in the sync round
            await sb.run(gateways, states, tenant, requests, rate, window, period, shared)
            for state in states:
                await state.stop()

    try:
        asyncio.run(alternate())
    finally:
        client = redis.Redis.from_url(sb.REDIS_URL)
        for namespace in namespaces:
            keys = list(client.scan_iter(f"{namespace}:*"))
            if keys:
                client.delete(*keys)
        client.close()
    sync_cpu = sum(shared.sync_cpu) / max(1, shared.requests) * 1e6
    lo, sh = sb.stats(local.path), sb.stats(shared.path)
    return {
        "replicas": 2,
        "endpoints": len(fabric.spec.endpoints),
        "rate_per_s": rate,
        "requests_per_run": len(requests),
        "runs_each": reps,
        "local_path_us": lo,
        "shared_path_us": sh,
        "sync_cpu_us_per_request": round(sync_cpu, 1),
        "added_us": {
            "p50": round(sh["p50"] - lo["p50"] + sync_cpu, 1),
            "p99": round(sh["p99"] - lo["p99"] + sync_cpu, 1),
        },
    }


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", default="3,10,30", help="gateway counts, ascending")
    parser.add_argument("--pushes", type=int, default=7, help="timed pushes per count")
    parser.add_argument("--records", type=int, default=100_000, help="audit records, batched")
    parser.add_argument("--baseline-records", type=int, default=3_000)
    parser.add_argument("--shared-requests", type=int, default=4000)
    parser.add_argument("--shared-reps", type=int, default=2)
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.gateways.split(","))

    print("policy propagation, ms (median and max over pushes)")
    print(f"{'':9} {'median gateway':>15} {'last gateway':>15} {'poll: all seen':>15} {'gateways'}")
    print(f"{'gateways':>9}" + " {:>7} {:>7}".format("median", "max") * 3 + f" {'RSS MB':>8}")
    with tempfile.TemporaryDirectory(prefix="isthmus-distributed-") as work:
        propagated = propagation(counts, args.pushes, Path(work))

    batched = asyncio.run(audit_ingest.run(args.records, 5000))
    baseline = asyncio.run(audit_ingest.run(args.baseline_records, 1))
    speedup = batched["records_per_s"] / baseline["records_per_s"]  # type: ignore[operator]
    print(
        f"audit ingest into PostgreSQL: {batched['records_per_s']:,} records/s batched "
        f"({batched['records']:,}, stored {batched['stored']:,}); one by one "
        f"{baseline['records_per_s']:,}/s; x{speedup:.1f}; target "
        f"{audit_ingest.TARGET_PER_S:,}/s"
    )

    shared = shared_overhead(args.shared_requests, args.shared_reps, 1000.0)
    lo, sh = shared["local_path_us"], shared["shared_path_us"]
    print(
        f"routing path per request, 2 replicas: local p50 {lo['p50']:.1f} us p99 "
        f"{lo['p99']:.1f} us; Redis p50 {sh['p50']:.1f} us p99 {sh['p99']:.1f} us; added "
        f"p50 {shared['added_us']['p50']} us, p99 {shared['added_us']['p99']} us (with "
        f"{shared['sync_cpu_us_per_request']} us of sync CPU per request)"
    )

    result = {
        "what": "policy propagation to N gateway processes; audit ingest into PostgreSQL; "
        "shared (Redis) against local routing state",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "control plane, NATS, PostgreSQL, Redis, emulator and every gateway share "
            "this machine",
        },
        "propagation": {
            "how": "guard policy changed and a bundle POSTed through the admin API; "
            "applied_*: the gateways' own applied_at minus the bundle's published_at (median "
            "gateway, last gateway); polled_all_applied: from the POST until a poll of the "
            "status bucket saw every gateway on the new version; median and max over pushes",
            "gateway_options": "--no-guard --no-log-decisions, 3-site fabric, "
            f"started {START_BATCH} at a time",
            "by_gateways": propagated,
        },
        "audit_ingest": {
            "batched": batched,
            "baseline_one_insert_per_record": baseline,
            "speedup": round(speedup, 1),
            "target_records_per_s": audit_ingest.TARGET_PER_S,
            "meets_target": bool(batched["exactly_once"])
            and batched["records_per_s"] >= audit_ingest.TARGET_PER_S,  # type: ignore[operator]
        },
        "shared_state": shared,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
