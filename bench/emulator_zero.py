"""Throughput of one emulated endpoint in zero mode (``--timing none``) or timed mode.

Starts ``python -m isthmus.engines.emulator --timing none`` in its own process, drives it with an
aiohttp client (keep-alive, fixed concurrency) from this process, and reports requests per
second, client-side latency percentiles, and the server's CPU time per request (from
/proc/<pid>/stat, so the figure does not depend on how fast the client is).

    .venv/bin/python bench/emulator_zero.py [--seconds 5] [--concurrency 32] [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


async def _load(url: str, seconds: float, concurrency: int, stream: bool) -> list[float]:
    body = orjson.dumps(
        {
            "model": "zero",
            "messages": [{"role": "user", "content": "Say something short."}],
            "max_tokens": 8,
            "stream": stream,
        }
    )
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}")
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument(
        "--timing", choices=("none", "model"), default="none",
        help="model: a fast engine (prefill 1M tok/s, decode 10k tok/s, batch 256) to measure "
        "the stepping loop's own cost",
    )  # fmt: skip
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "isthmus.engines.emulator", "--port", "0", "--model", "zero",
           "--timing", args.timing]  # fmt: skip
    if args.timing == "model":
        cmd += ["--prefill-tps", "1000000", "--decode-tps", "10000", "--max-batch-size", "256"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        _, base = proc.stdout.readline().split()
        url = base + "/chat/completions"
        asyncio.run(_load(url, 1.0, args.concurrency, args.stream))  # warm-up
        cpu0, t0 = _cpu_seconds(proc.pid), time.perf_counter()
        lat = asyncio.run(_load(url, args.seconds, args.concurrency, args.stream))
        wall, cpu = time.perf_counter() - t0, _cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(10)
    lat.sort()
    n = len(lat)
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    print(f"load: {args.concurrency} concurrent keep-alive clients, {args.seconds:.0f} s, "
          f"stream={args.stream}, timing={args.timing}, 8 output tokens")  # fmt: skip
    print(f"requests: {n}  throughput: {n / wall:,.0f} req/s")
    print(f"latency ms: p50 {1e3 * statistics.median(lat):.2f}  p99 {1e3 * lat[int(0.99 * n)]:.2f}")
    print(f"server CPU per request: {1e3 * cpu / n:.3f} ms  (=> ~{n / cpu:,.0f} req/s per core)")


if __name__ == "__main__":
    main()
