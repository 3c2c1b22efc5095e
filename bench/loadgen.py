"""An open-loop HTTP/1.1 load generator for OpenAI chat completions, as its own process.

Requests are *scheduled* at a fixed rate (Poisson or uniform arrivals, seeded) whatever the
server does, so a slow server meets a growing queue instead of a politely waiting client (no
coordinated omission). Each request is sent on an idle keep-alive connection of a pool, or on a
new one while the pool is below ``--max-conns``, or waits for the next connection to free up.

Latency is measured from the moment the request is *issued* (the scheduler picks it up: a wait
for a free connection counts) to the last byte of the response; ``ttfb`` is the first byte of
the response body (the first SSE event of a stream). The scheduler's lag behind the ideal
arrival times is reported separately, so a loadgen that cannot keep up shows itself.

The client is raw asyncio on uvloop with httptools' C parser: a request costs a few tens of
microseconds of loadgen CPU, reported per request (``loadgen_cpu_us_per_request``) together
with the CPU time of any ``--cpu-pid`` (a server and its descendants) over the same window.

A run is ``--warmup`` seconds of load, then ``--seconds`` measured: only requests scheduled in
the measured window count; a request unanswered ``--timeout`` seconds after issue fails.
Prints one JSON object on stdout.

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8000/v1/chat/completions \
        --rps 500 --seconds 10 [--stream] [--arrivals poisson] [--cpu-pid PID]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop

_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- CPU of a process tree, from /proc ---------------------------------------------------------
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out.extend(int(c) for c in text.split())
    except OSError:
        pass
    return out


def _own_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and every descendant alive now, by pid."""
    out: dict[int, float] = {}
    stack = [pid]
    while stack:
        p = stack.pop()
        if p in out:
            continue
        out[p] = _own_cpu_seconds(p)
        stack.extend(_children(p))
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``: all but idle, iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLK_TCK


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # a process that appeared during the window counts from zero; one that ended is lost
    return sum(after[p] - before.get(p, 0.0) for p in after)


# -- one request and the connection pool -------------------------------------------------------
class _Request:
    __slots__ = (
        "done",
        "error",
        "head",
        "issued",
        "measured",
        "scheduled",
        "sent",
        "status",
        "tail",
        "ttfb",
    )

    def __init__(self, scheduled: float, issued: float, measured: bool) -> None:
        self.scheduled = scheduled
        self.issued = issued
        self.sent = 0.0
        self.ttfb = 0.0
        self.done = 0.0
        self.status = 0
        self.head = b""
        self.tail = b""
        self.error: str | None = None
        self.measured = measured


class _Connection(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.request: _Request | None = None
        self.now = 0.0
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.now = time.perf_counter()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"parse: {exc}")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.request is not None:
            self._fail("connection lost")
        self.pool.lost(self)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        if self.request is not None:
            self.request.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        r = self.request
        if r is None:
            return
        if not r.ttfb:
            r.ttfb = self.now
            r.head = body[:16]
        r.tail = (r.tail + body)[-64:]

    def on_message_complete(self) -> None:
        r = self.request
        if r is None:
            return
        r.done = self.now
        self.request = None
        keep = self.parser.should_keep_alive()
        self.pool.finished(r, self if keep else None)
        if not keep:
            self.close()

    # ours
    def send(self, request: _Request, payload: bytes) -> None:
        assert self.transport is not None
        self.request = request
        request.sent = time.perf_counter()
        self.transport.write(payload)

    def _fail(self, reason: str) -> None:
        r = self.request
        if r is None:
            return
        self.request = None
        r.error = reason
        r.done = time.perf_counter()
        self.pool.finished(r, None)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


class _Pool:
    def __init__(self, host: str, port: int, payload: bytes, max_conns: int) -> None:
        self.host, self.port, self.payload, self.max_conns = host, port, payload, max_conns
        self.idle: list[_Connection] = []
        self.waiting: collections.deque[_Request] = collections.deque()
        self.conns = 0  # open or opening
        self.outstanding = 0
        self.finished_requests: list[_Request] = []
        self.connect_errors = 0
        self.loop = asyncio.get_running_loop()
        self.all_done = asyncio.Event()
        self.scheduling = True

    def submit(self, request: _Request) -> None:
        self.outstanding += 1
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:  # a closed one was already counted out by lost()
                conn.send(request, self.payload)
                return
        if self.conns < self.max_conns:
            self.conns += 1
            self.loop.create_task(self._open(request))
        else:
            self.waiting.append(request)

    async def _open(self, request: _Request) -> None:
        try:
            _, conn = await self.loop.create_connection(
                lambda: _Connection(self), self.host, self.port
            )
        except Exception as exc:  # refused, reset, out of file descriptors...
            self.conns -= 1
            self.connect_errors += 1
            request.error = f"connect: {exc.__class__.__name__}"
            request.done = time.perf_counter()
            self._record(request)
            return
        conn.send(request, self.payload)

    def finished(self, request: _Request, conn: _Connection | None) -> None:
        self._record(request)
        if conn is None:
            return
        if self.waiting:
            conn.send(self.waiting.popleft(), self.payload)
        else:
            self.idle.append(conn)

    def lost(self, conn: _Connection) -> None:
        self.conns -= 1
        if self.waiting and self.conns < self.max_conns:
            self.conns += 1
            self.loop.create_task(self._open(self.waiting.popleft()))

    def _record(self, request: _Request) -> None:
        self.outstanding -= 1
        self.finished_requests.append(request)
        if not self.scheduling and self.outstanding == 0:
            self.all_done.set()

    def close_all(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


# -- the run -----------------------------------------------------------------------------------
def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)
    n = len(v)

    def q(p: float) -> float:
        # linear interpolation between closest ranks (numpy's default)
        k = (n - 1) * p / 100.0
        lo = int(k)
        hi = min(lo + 1, n - 1)
        return v[lo] + (v[hi] - v[lo]) * (k - lo)

    return {
        "p50": q(50),
        "p90": q(90),
        "p99": q(99),
        "p99.9": q(99.9),
        "max": v[-1],
        "mean": sum(v) / n,
    }


def _build_payload(host: str, port: int, path: str, args: argparse.Namespace) -> bytes:
    body = orjson.dumps(
        {
            "model": args.model,
            "messages": [{"role": "user", "content": args.prompt}],
            "max_tokens": args.max_tokens,
            "stream": args.stream,
        }
    )
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: */*",
        f"Content-Length: {len(body)}",
    ]
    if args.api_key:
        lines.append(f"Authorization: Bearer {args.api_key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _ok(r: _Request, stream: bool) -> bool:
    if r.error is not None or r.status != 200:
        return False
    if stream:
        return b"[DONE]" in r.tail
    return r.head.startswith(b"{")


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    payload = _build_payload(host, port, url.path or "/", args)
    pool = _Pool(host, port, payload, args.max_conns)
    rng = random.Random(args.seed)
    total_s = args.warmup + args.seconds
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(args.rps) if args.arrivals == "poisson" else 1.0 / args.rps
        if t >= total_s:
            break
        times.append(t)

    cpu_pids: list[int] = args.cpu_pid or []
    window: dict[str, object] = {}

    def snapshot(key: str) -> None:
        window[key + "_wall"] = time.perf_counter()
        window[key + "_self"] = time.process_time()
        window[key + "_machine"] = machine_busy_seconds()
        window[key + "_pids"] = {pid: tree_cpu_seconds(pid) for pid in cpu_pids}

    start = time.perf_counter() + 0.05
    window_start = start + args.warmup
    window_end = start + total_s
    lags: list[float] = []
    snapped_start = False
    for offset in times:
        due = start + offset
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
            now = time.perf_counter()
        if not snapped_start and due >= window_start:
            snapshot("start")
            snapped_start = True
        measured = due >= window_start
        if measured:
            lags.append(now - due)
        pool.submit(_Request(due, now, measured))
    now = time.perf_counter()
    if now < window_end:
        await asyncio.sleep(window_end - now)
    if not snapped_start:
        snapshot("start")
    snapshot("end")
    pool.scheduling = False
    if pool.outstanding:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.all_done.wait(), args.timeout)
    unfinished = pool.outstanding
    pool.close_all()

    measured = [r for r in pool.finished_requests if r.measured]
    ok = [r for r in measured if _ok(r, args.stream) and r.done - r.issued <= args.timeout]
    scheduled = sum(1 for off in times if start + off >= window_start)
    w0, w1 = float(window["start_wall"]), float(window["end_wall"])  # type: ignore[arg-type]
    duration = w1 - w0
    completed_in_window = sum(
        1 for r in pool.finished_requests if w0 <= r.done < w1 and _ok(r, args.stream)
    )
    ok_ids = {id(r) for r in ok}
    errors: dict[str, int] = collections.Counter()
    for r in measured:
        if id(r) not in ok_ids:
            errors[r.error or (f"http {r.status}" if r.status != 200 else "bad body/timeout")] += 1
    if unfinished:
        errors["unfinished at timeout"] += unfinished
    self_cpu = float(window["end_self"]) - float(window["start_self"])  # type: ignore[arg-type]
    issued_in_window = len(measured) + unfinished
    server_cpu = {
        str(pid): cpu_delta(
            window["start_pids"][pid],  # type: ignore[index]
            window["end_pids"][pid],  # type: ignore[index]
        )
        for pid in cpu_pids
    }
    machine_busy = float(window["end_machine"]) - float(window["start_machine"])  # type: ignore[arg-type]
    ours = self_cpu + sum(server_cpu.values())
    ms = 1000.0
    return {
        "target_rps": args.rps,
        "arrivals": args.arrivals,
        "stream": args.stream,
        "seconds": round(duration, 3),
        "scheduled": scheduled,
        "ok": len(ok),
        "failed": scheduled - len(ok),
        "success_rate": len(ok) / scheduled if scheduled else 0.0,
        "achieved_rps": completed_in_window / duration if duration > 0 else 0.0,
        "issued_rps": issued_in_window / duration if duration > 0 else 0.0,
        "errors": dict(errors),
        "latency_ms": {k: v * ms for k, v in _percentiles([r.done - r.issued for r in ok]).items()},
        "ttfb_ms": {k: v * ms for k, v in _percentiles([r.ttfb - r.issued for r in ok]).items()},
        "scheduler_lag_ms": {k: v * ms for k, v in _percentiles(lags).items()},
        "connections_opened_max": pool.conns,
        "loadgen_cpu_s": self_cpu,
        "loadgen_cpu_us_per_request": self_cpu / max(1, issued_in_window) * 1e6,
        "server_cpu_s": server_cpu,
        # every core's busy time over the window, and the part that is neither this loadgen nor
        # a metered process: other work on the machine (noise)
        "machine_busy_cores": machine_busy / duration if duration > 0 else 0.0,
        "other_busy_cores": max(0.0, machine_busy - ours) / duration if duration > 0 else 0.0,
        "server_cpu_us_per_request": {
            pid: cpu / max(1, completed_in_window) * 1e6 for pid, cpu in server_cpu.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="http://HOST:PORT/v1/chat/completions")
    p.add_argument("--rps", type=float, required=True)
    p.add_argument("--seconds", type=float, default=10.0, help="measured window")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    p.add_argument("--max-conns", type=int, default=1024)
    p.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
    p.add_argument("--model", default="zero")
    p.add_argument("--prompt", default="Say something short.")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--api-key", default="sk-bench")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cpu-pid", type=int, action="append", help="also meter this process tree")
    args = p.parse_args(argv)
    if args.rps <= 0 or args.seconds <= 0:
        p.error("--rps and --seconds must be > 0")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(args))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
