"""The latency each proxy ADDS over calling an emulated engine directly, and the rate it holds.

Every party is its own process, one worker each, on this machine (2 cores: the figures are
for the machine as a whole, loadgen included):

- upstream: ``python -m isthmus.engines.emulator --timing none`` (answers at once; shared);
- ``direct``: the loadgen calls the upstream itself — the floor, loadgen cost included;
- ``isthmus``: the Isthmus gateway on uvicorn + uvloop + httptools (``bench/serve_gateway.py``,
  the code path of ``isthmus up`` and ``isthmus gateway``; the full request path: key, checks,
  admission, ``route()``, pooled upstream client, metrics; decision log and health checks off);
- ``isthmus-guard``: the same with inspection on (the default guard policy on the prompt and
  the response: injection classifier, PII, secrets, URLs, output filters);
- ``isthmus-granian``: the same gateway on granian (Rust HTTP, ASGI, uvloop; needs
  ``pip install granian`` in .venv, else ``--skip-granian``);
- ``python-floor``: a bare forwarding proxy on the same event loop, parser and upstream pool
  as the gateway (``bench/python_floor_proxy.py``; ``--skip-floor``): what any Python proxy
  pays, so the gateway's own cost is its distance from this floor;
- ``nginx``: a plain reverse proxy (Debian package; keep-alive upstream pool, buffering off,
  1 worker; its config generated into a temporary prefix, run in the foreground);
- ``litellm``: LiteLLM proxy, installed by this script into ``bench/.venvs/litellm`` (pinned:
  ``proxies.LITELLM_VERSION``), ``model_list`` pointing at the upstream, master key set (it
  refuses to start without one), no database, 1 worker.

How each party is started and checked: ``bench/proxies.py``.

The load comes from ``bench/loadgen.py`` in its own process: open loop at a fixed rate,
Poisson arrivals, keep-alive pool, latency to the last byte (and to the first body byte for
streams), the CPU of the proxy's process tree and of the upstream over the measured window.

1. Grid: non-streaming and streaming at 100, 500 and 1,000 req/s, ``--reps`` repetitions of
   ``--seconds`` each after a warm-up, configurations interleaved within a repetition (each
   repetition rotates their order), so drift on this noisy machine hits all of them alike.
   ADDED latency = proxy minus direct at the same percentile, paired within a repetition;
   headline figures are medians over repetitions. LiteLLM runs one repetition and stops
   climbing the rates at the first it cannot hold (overload costs minutes to drain).
2. Sustained rate: a step search over 250, 500, 1000, 1500, 2000, 3000... req/s
   (non-streaming), stopping at the first failing step: success < 99.9 %, or added P99
   > 20 ms, or achieved rate < 95 % of the target. A failing step is retried once (noise).
   A proxy that fails the first step is searched downwards (100, 50, 25, 10).
3. ``bench/routing_decision.py``, run in a scratch copy (so its own results file is not
   rewritten), quoted; 4. a py-spy profile of the gateway at 750 req/s (top self time).

This machine is shared: every run meters the CPU that other work used meanwhile
(``other_busy_cores``, from /proc/stat); a run during which it exceeded a quarter of a core is
run again (within a budget) and the quieter run kept; the start waits for a quiet machine.

Writes ``bench/results/gateway_overhead.json`` (``--quick``: ``gateway_overhead_quick.json``).

    .venv/bin/python bench/gateway_overhead.py [--quick] [--skip-litellm] [--skip-nginx]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen import _children  # bench/ is on sys.path: this script's folder
from machine import cpu_model
from proxies import (
    API_KEY,
    BENCH,
    CHAT,
    MODEL,
    PYTHON,
    REPO,
    VENVS,
    Children,
    Proxy,
    ensure_venv,
    installed_version,
    nginx_binary,
    probe,
    request_body,
    settle,
    start_emulator,
    start_isthmus,
    start_litellm,
    start_nginx,
    start_python_floor,
    venv_python,
)
from pyspy_hotspots import hotspots

RESULTS = BENCH / "results"
LOADGEN = BENCH / "loadgen.py"

PY_SPY_VERSION = "0.4.3"

GRID_RATES = (100, 500, 1000)
STEP_LADDER = (250, 500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000, 10000)
STEP_DOWN = (100, 50, 25, 10)
MAX_ADDED_P99_MS = 20.0
MIN_SUCCESS = 0.999
MIN_ACHIEVED = 0.95
PROFILE_RPS = 750
NOISY_CORES = 0.25  # other work busier than this during a run: run it again
_NOISE_RERUNS = {"left": 12}
MAX_CONNS = 256

TARGETS = {
    "added_p50_ms_at_500": 1.0,
    "added_p99_ms_at_500": 5.0,
    "sustained_vs_litellm": 5.0,
    "added_vs_nginx": 3.0,
}


# -- one load run ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    seconds: float
    warmup: float
    timeout: float = 5.0


def run_load(
    children: Children,
    proxy: Proxy,
    upstream: Proxy,
    rps: float,
    stream: bool,
    load: Load,
) -> dict[str, Any]:
    cmd = [PYTHON, str(LOADGEN), "--url", proxy.url + CHAT, "--rps", str(rps)]
    cmd += ["--seconds", str(load.seconds), "--warmup", str(load.warmup)]
    cmd += ["--timeout", str(load.timeout), "--model", MODEL, "--api-key", API_KEY]
    # far above what a healthy proxy keeps in flight (8,000 req/s x 5 ms = 40); an overloaded
    # one gets its backlog queued in the loadgen (still timed) rather than in its own process
    cmd += ["--max-conns", str(MAX_CONNS)]
    pids = [p for p in (proxy.pid, upstream.pid) if p is not None]
    pids = list(dict.fromkeys(pids))
    for pid in pids:
        cmd += ["--cpu-pid", str(pid)]
    if stream:
        cmd.append("--stream")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    children.procs.append(proc)
    try:
        out, err = proc.communicate(timeout=load.warmup + load.seconds + load.timeout + 60)
    finally:
        if proc in children.procs:
            children.procs.remove(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err.decode(errors='replace')[-800:]}")
    result: dict[str, Any] = json.loads(out)
    cpu = result["server_cpu_us_per_request"]
    result["proxy_cpu_us_per_request"] = (
        cpu.get(str(proxy.pid)) if proxy.name != "direct" and proxy.pid else None
    )
    result["upstream_cpu_us_per_request"] = cpu.get(str(upstream.pid))
    return result


def run_quiet(
    children: Children,
    proxy: Proxy,
    upstream: Proxy,
    rps: float,
    stream: bool,
    load: Load,
) -> dict[str, Any]:
    """``run_load``, run once more if other work on the machine kept more than NOISY_CORES
    busy meanwhile (this machine is shared); the quieter of the two runs is kept."""
    result = run_load(children, proxy, upstream, rps, stream, load)
    noisy = result.get("other_busy_cores", 0.0) > NOISY_CORES
    if noisy and _NOISE_RERUNS["left"] > 0:  # a budget, so a busy machine cannot double the run
        _NOISE_RERUNS["left"] -= 1
        if proxy.pid is not None and result["success_rate"] < MIN_SUCCESS:
            settle(proxy.pid)
        again = run_load(children, proxy, upstream, rps, stream, load)
        if again.get("other_busy_cores", 0.0) < result.get("other_busy_cores", 0.0):
            result = again
        result["rerun_for_noise"] = True
    return result


def wait_for_quiet(max_wait_s: float) -> float:
    """Wait (at most ``max_wait_s``) until other work keeps less than NOISY_CORES busy."""
    from loadgen import machine_busy_seconds

    start = time.monotonic()
    while True:
        a = machine_busy_seconds()
        time.sleep(2.0)
        busy = (machine_busy_seconds() - a) / 2.0
        if busy < NOISY_CORES or time.monotonic() - start > max_wait_s:
            return busy
        if time.monotonic() - start < 3.0:
            print(
                f"  the machine is busy ({busy:.2f} cores); waiting up to {max_wait_s:.0f} s "
                "for it to quieten...",
                flush=True,
            )


def _lat(result: dict[str, Any], key: str, pct: str = "p50") -> float | None:
    v = result.get(key, {}).get(pct)
    return float(v) if v is not None else None


def holds(result: dict[str, Any], direct: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a step holds, and why not."""
    if result["success_rate"] < MIN_SUCCESS:
        return False, f"success {result['success_rate'] * 100:.2f}% < {MIN_SUCCESS * 100:.1f}%"
    achieved = result["achieved_rps"] / result["target_rps"]
    if achieved < MIN_ACHIEVED:
        return (
            False,
            f"achieved {result['achieved_rps']:.0f} req/s = {achieved * 100:.1f}% of target",
        )
    if direct is not None:
        p99, base = _lat(result, "latency_ms", "p99"), _lat(direct, "latency_ms", "p99")
        if p99 is None or base is None:
            return False, "no latency"
        if p99 - base > MAX_ADDED_P99_MS:
            return False, f"added P99 {p99 - base:.1f} ms > {MAX_ADDED_P99_MS:.0f} ms"
    return True, "ok"


# -- the phases --------------------------------------------------------------------------------
def _med(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def summarise_point(runs: list[dict[str, Any]], directs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repetitions; added latency paired with the direct run of the same rep."""
    out: dict[str, Any] = {"reps": len(runs)}
    for key in ("latency_ms", "ttfb_ms"):
        for pct in ("p50", "p90", "p99", "p99.9"):
            out[f"{key[:-3]}_{pct}_ms"] = _med([_lat(r, key, pct) for r in runs])
            if directs:
                added = [
                    (_lat(r, key, pct) or 0.0) - (_lat(d, key, pct) or 0.0)
                    for r, d in zip(runs, directs, strict=False)
                    if _lat(r, key, pct) is not None and _lat(d, key, pct) is not None
                ]
                out[f"added_{key[:-3]}_{pct}_ms"] = _med(added)
                out[f"added_{key[:-3]}_{pct}_ms_range"] = (
                    [min(added), max(added)] if added else None
                )
    out["success_rate"] = _med([r["success_rate"] for r in runs])
    out["achieved_rps"] = _med([r["achieved_rps"] for r in runs])
    out["proxy_cpu_us_per_request"] = _med([r["proxy_cpu_us_per_request"] for r in runs])
    out["upstream_cpu_us_per_request"] = _med([r["upstream_cpu_us_per_request"] for r in runs])
    out["loadgen_cpu_us_per_request"] = _med([r["loadgen_cpu_us_per_request"] for r in runs])
    out["scheduler_lag_p99_ms"] = _med([_lat(r, "scheduler_lag_ms", "p99") for r in runs])
    out["other_busy_cores"] = _med([r.get("other_busy_cores") for r in runs])
    errors: collections.Counter[str] = collections.Counter()
    for r in runs:
        errors.update(r["errors"])
    out["errors"] = dict(errors)
    return out


def phase_grid(
    children: Children,
    upstream: Proxy,
    proxies: list[Proxy],
    reps: int,
    load: Load,
    log: list[str],
) -> dict[str, Any]:
    names = ["direct", *(p.name for p in proxies)]
    by_name = {"direct": upstream, **{p.name: p for p in proxies}}
    raw: dict[tuple[str, bool, int], list[dict[str, Any]]] = collections.defaultdict(list)
    litellm_stopped: dict[bool, int | None] = {False: None, True: None}
    for rep in range(reps):
        for stream in (False, True):
            for rps in GRID_RATES:
                order = names[rep % len(names) :] + names[: rep % len(names)]
                for name in order:
                    proxy = by_name[name]
                    if name == "litellm" and (rep > 0 or litellm_stopped[stream] is not None):
                        continue
                    try:
                        result = run_quiet(children, proxy, upstream, rps, stream, load)
                    except Exception as exc:
                        log.append(f"grid {name} {rps} stream={stream}: {exc}")
                        continue
                    raw[(name, stream, rps)].append(result)
                    ok, why = holds(result, None)
                    mode = "stream" if stream else "plain"
                    print(
                        f"  rep {rep + 1}/{reps} {mode:6} {rps:5} req/s {name:16} "
                        f"p50 {_fmt(_lat(result, 'latency_ms'))} p99 "
                        f"{_fmt(_lat(result, 'latency_ms', 'p99'))} ms  "
                        f"ok {result['success_rate'] * 100:6.2f}%  "
                        f"{result['achieved_rps']:7.1f} req/s" + ("" if ok else f"  [{why}]"),
                        flush=True,
                    )
                    if not ok and proxy.pid is not None:
                        settle(proxy.pid)
                    if name == "litellm" and not ok:
                        litellm_stopped[stream] = rps
    grid: dict[str, Any] = {}
    for name in names:
        for stream in (False, True):
            mode = "stream" if stream else "plain"
            for rps in GRID_RATES:
                runs = raw.get((name, stream, rps), [])
                if not runs:
                    stopped = litellm_stopped[stream] if name == "litellm" else None
                    grid.setdefault(name, {}).setdefault(mode, {})[str(rps)] = {
                        "skipped": f"overloaded at {stopped} req/s" if stopped else "no run"
                    }
                    continue
                directs = raw.get(("direct", stream, rps), [])
                if name == "litellm":  # its single rep pairs with the first direct rep
                    directs = directs[:1]
                summary = summarise_point(runs, [] if name == "direct" else directs)
                summary["runs"] = runs
                grid.setdefault(name, {}).setdefault(mode, {})[str(rps)] = summary
    return grid


def phase_steps(
    children: Children,
    upstream: Proxy,
    proxies: list[Proxy],
    load: Load,
    retry: bool,
    log: list[str],
) -> dict[str, Any]:
    """The step search. ``sustained_rps`` obeys the full rule; ``capacity_rps`` drops the
    latency bound (success and achieved rate only), for a proxy that never meets it."""
    baseline: dict[int, dict[str, Any]] = {}

    def direct_at(rps: int) -> dict[str, Any]:
        if rps not in baseline:
            baseline[rps] = run_quiet(children, upstream, upstream, rps, False, load)
            ok, why = holds(baseline[rps], None)
            print(f"  steps {'direct':16} {rps:6} req/s: {'holds' if ok else why}", flush=True)
        return baseline[rps]

    def attempt(proxy: Proxy, rps: int) -> tuple[bool, str, dict[str, Any]]:
        for attempt_no in range(2):
            result = run_quiet(children, proxy, upstream, rps, False, load)
            ok, why = holds(result, direct_at(rps))
            if proxy.pid is not None and not ok:
                settle(proxy.pid)
            # a marginal failure may be noise: try once more; a clear overload is not
            if ok or not retry or attempt_no == 1 or result["success_rate"] < 0.99:
                return ok, why, result
        raise AssertionError("unreachable")

    def step(proxy: Proxy, rps: int) -> dict[str, Any]:
        ok, why, result = attempt(proxy, rps)
        direct = baseline[rps]
        p99, base = _lat(result, "latency_ms", "p99"), _lat(direct, "latency_ms", "p99")
        floor_ok, floor_why = holds(direct, None)
        relaxed_ok = holds(result, None)[0]
        print(f"  steps {proxy.name:16} {rps:6} req/s: {'holds' if ok else why}", flush=True)
        return {
            "rps": rps,
            "holds": ok,
            "why": why if floor_ok else f"{why}; the direct floor fails too: {floor_why}",
            "holds_without_latency_bound": relaxed_ok,
            "success_rate": result["success_rate"],
            "achieved_rps": result["achieved_rps"],
            "p50_ms": _lat(result, "latency_ms"),
            "p99_ms": p99,
            "direct_p99_ms": base,
            "added_p99_ms": (p99 - base) if p99 is not None and base is not None else None,
            "proxy_cpu_us_per_request": result.get("proxy_cpu_us_per_request"),
            "upstream_cpu_us_per_request": result.get("upstream_cpu_us_per_request"),
            "loadgen_cpu_us_per_request": result.get("loadgen_cpu_us_per_request"),
        }

    out: dict[str, Any] = {}
    for proxy in proxies:
        steps: list[dict[str, Any]] = []
        held: int | None = None
        failed: dict[str, Any] | None = None
        try:
            for rps in STEP_LADDER:
                st = step(proxy, rps)
                steps.append(st)
                if not st["holds"]:
                    failed = st
                    break
                held = rps
            if held is None:  # failed the first step: search downwards
                for rps in STEP_DOWN:
                    st = step(proxy, rps)
                    steps.append(st)
                    if st["holds"]:
                        held = rps
                        break
        except Exception as exc:
            log.append(f"steps {proxy.name}: {exc}")
        relaxed = [st["rps"] for st in steps if st["holds_without_latency_bound"]]
        out[proxy.name] = {
            "sustained_rps": held,
            "capacity_rps": max(relaxed) if relaxed else None,
            "failed_at": failed["rps"] if failed else None,
            "why": failed["why"] if failed else None,
            "steps": steps,
        }
    # the floor: the loadgen straight to the upstream, at the rates the proxies needed
    direct_steps = []
    for rps in sorted(baseline):
        ok, why = holds(baseline[rps], None)
        direct_steps.append(
            {
                "rps": rps,
                "holds": ok,
                "why": why,
                "success_rate": baseline[rps]["success_rate"],
                "achieved_rps": baseline[rps]["achieved_rps"],
                "p50_ms": _lat(baseline[rps], "latency_ms"),
                "p99_ms": _lat(baseline[rps], "latency_ms", "p99"),
                "upstream_cpu_us_per_request": baseline[rps].get("upstream_cpu_us_per_request"),
                "loadgen_cpu_us_per_request": baseline[rps].get("loadgen_cpu_us_per_request"),
            }
        )
    held_direct = None
    for st in direct_steps:
        if not st["holds"]:
            break
        held_direct = st["rps"]
    first_fail = next((st for st in direct_steps if not st["holds"]), None)
    out = {
        "direct": {
            "sustained_rps": held_direct,
            "capacity_rps": held_direct,
            "failed_at": first_fail["rps"] if first_fail else None,
            "why": first_fail["why"]
            if first_fail
            else "searched only as far as the proxies needed",
            "steps": direct_steps,
        },
        **out,
    }
    return out


def phase_profile(
    children: Children, upstream: Proxy, proxies: list[Proxy], seconds: float, log: list[str]
) -> dict[str, Any]:
    """py-spy the gateway process (granian: its worker) while loaded at PROFILE_RPS."""
    try:
        venv = ensure_venv("tools", f"py-spy=={PY_SPY_VERSION}", "py-spy", PY_SPY_VERSION)
    except Exception as exc:
        log.append(f"profile: {exc}")
        return {"error": str(exc)}
    out: dict[str, Any] = {}
    for proxy in proxies:
        if not proxy.name.startswith("isthmus") or proxy.pid is None:
            continue
        kids = _children(proxy.pid)
        target = kids[0] if proxy.name.endswith("granian") and kids else proxy.pid
        raw = children.logs / f"profile-{proxy.name}.txt"
        # --native shows the C side (event loop, parsers, syscalls, the GC); it pauses the
        # process to sample, so the latency of this run is not representative, only the split
        cmd = [
            str(venv / "bin" / "py-spy"),
            "record",
            "-p",
            str(target),
            "-d",
            str(int(seconds)),
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(raw),
            "--native",
        ]
        spy = children.start(f"py-spy-{proxy.name}", cmd)
        try:
            time.sleep(0.3)
            load = Load(seconds=seconds, warmup=0.5)
            result = run_load(children, proxy, upstream, PROFILE_RPS, False, load)
            spy.wait(30)
        except Exception as exc:
            log.append(f"profile {proxy.name}: {exc}")
            continue
        finally:
            children.stop(spy)
        if not raw.exists():
            log.append(
                f"profile {proxy.name}: py-spy wrote nothing: "
                f"{children.tail(f'py-spy-{proxy.name}', 400)}"
            )
            continue
        out[proxy.name] = {
            "rps": PROFILE_RPS,
            "seconds": seconds,
            "achieved_rps": result["achieved_rps"],
            **hotspots(raw.read_text()),
        }
    return out


def phase_routing_decision(log: list[str]) -> dict[str, Any] | None:
    script = BENCH / "routing_decision.py"
    if not script.exists():
        return None
    with tempfile.TemporaryDirectory(prefix="isthmus-routing-") as tmp:
        mirror = Path(tmp)
        (mirror / "bench").mkdir()
        shutil.copy(script, mirror / "bench" / script.name)
        (mirror / "data").symlink_to(REPO / "data")
        run = subprocess.run(
            [PYTHON, str(mirror / "bench" / script.name)], capture_output=True, text=True, cwd=REPO
        )
        result = mirror / "bench" / "results" / "routing_decision.json"
        if run.returncode != 0 or not result.exists():
            log.append(f"routing_decision.py failed: {run.stderr[-600:]}")
            return None
        data: dict[str, Any] = json.loads(result.read_text())
        data["stdout"] = run.stdout
        return data


# -- environment -------------------------------------------------------------------------------
def _cpu_pressure() -> str | None:
    """Linux PSI: the share of time some task waited for a CPU (10 s, 60 s, 300 s averages)."""
    with contextlib.suppress(OSError):
        return Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
    return None


def machine() -> dict[str, Any]:
    cpu = cpu_model()
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem_gb = round(kb / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),  # other work on the machine shows here
        "cpu_pressure_at_start": _cpu_pressure(),
    }


def versions(with_litellm: bool) -> dict[str, Any]:
    import importlib.metadata as md

    out: dict[str, Any] = {}
    for dist in ("isthmus", "uvicorn", "uvloop", "httptools", "granian", "aiohttp", "orjson"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO)
    if git.returncode == 0:
        out["isthmus_commit"] = git.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "isthmus"], capture_output=True, text=True, cwd=REPO
        )
        out["isthmus_tree_dirty"] = bool(dirty.stdout.strip())
    binary = nginx_binary()
    if binary:
        run = subprocess.run([binary, "-v"], capture_output=True, text=True)
        out["nginx"] = (run.stderr or run.stdout).strip().split("/")[-1]
    if with_litellm:
        out["litellm"] = installed_version(venv_python(VENVS / "litellm"), "litellm")
    return out


# -- report ------------------------------------------------------------------------------------
def _fmt(v: float | None, width: int = 7, digits: int = 2) -> str:
    return f"{v:{width}.{digits}f}" if v is not None else f"{'-':>{width}}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def verdicts(grid: dict[str, Any], steps: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("isthmus", "isthmus-guard", "isthmus-granian"):
        if name not in grid:
            continue
        point = grid[name]["plain"].get("500", {})
        a50, a99 = point.get("added_latency_p50_ms"), point.get("added_latency_p99_ms")
        entry: dict[str, Any] = {
            "added_p50_ms_at_500": a50,
            "added_p99_ms_at_500": a99,
            "added_p50_met": a50 is not None and a50 <= TARGETS["added_p50_ms_at_500"],
            "added_p99_met": a99 is not None and a99 <= TARGETS["added_p99_ms_at_500"],
        }
        ours = steps.get(name, {}).get("sustained_rps")
        entry["sustained_rps"] = ours
        if "litellm" in steps:
            strict = steps["litellm"].get("sustained_rps")
            capacity = steps["litellm"].get("capacity_rps")
            # LiteLLM adds more than 20 ms at P99 even at 10 req/s, so under the full rule it
            # sustains nothing; compare with its capacity without the latency bound instead
            # (a looser rule for LiteLLM: the ratio is conservative)
            theirs = strict if strict else capacity
            ratio = _ratio(ours, theirs)
            entry["litellm_sustained_rps"] = strict
            entry["litellm_capacity_rps"] = capacity
            entry["litellm_basis"] = (
                "sustained (full rule)"
                if strict
                else "capacity without the latency bound (it never meets added P99 <= 20 ms)"
            )
            entry["sustained_vs_litellm"] = ratio
            entry["sustained_vs_litellm_met"] = (
                ratio is not None and ratio >= TARGETS["sustained_vs_litellm"]
            )
        if "nginx" in grid:
            ngx = grid["nginx"]["plain"].get("500", {})
            n50, n99 = ngx.get("added_latency_p50_ms"), ngx.get("added_latency_p99_ms")
            r50, r99 = _ratio(a50, n50), _ratio(a99, n99)
            entry.update(
                {
                    "nginx_added_p50_ms_at_500": n50,
                    "nginx_added_p99_ms_at_500": n99,
                    "added_vs_nginx_p50": r50,
                    "added_vs_nginx_p99": r99,
                    "added_vs_nginx_met": r50 is not None
                    and r99 is not None
                    and r50 <= TARGETS["added_vs_nginx"]
                    and r99 <= TARGETS["added_vs_nginx"],
                    "nginx_sustained_rps": steps.get("nginx", {}).get("sustained_rps"),
                    "sustained_vs_nginx": _ratio(ours, steps.get("nginx", {}).get("sustained_rps")),
                }
            )
        if "python-floor" in grid:
            floor = grid["python-floor"]["plain"].get("500", {})
            f50, f99 = floor.get("added_latency_p50_ms"), floor.get("added_latency_p99_ms")
            entry.update(
                {
                    "floor_added_p50_ms_at_500": f50,
                    "floor_added_p99_ms_at_500": f99,
                    "over_floor_p50_ms": None if a50 is None or f50 is None else a50 - f50,
                    "over_floor_p99_ms": None if a99 is None or f99 is None else a99 - f99,
                    "floor_vs_nginx_p50": _ratio(f50, entry.get("nginx_added_p50_ms_at_500")),
                }
            )
        out[name] = entry
    return out


def print_report(result: dict[str, Any]) -> None:
    grid, steps = result["grid"], result["sustained"]
    print()
    print(
        f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; "
        f"versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}"
    )
    print(
        f"each point: median of {result['settings']['reps']} interleaved repetitions of "
        f"{result['settings']['grid_seconds']:g} s (LiteLLM: 1); latency in ms, CPU in us/request"
    )
    header = (
        f"{'config':16} {'mode':6} {'req/s':>5} {'P50':>7} {'P99':>7} {'+P50':>7} {'+P99':>7}"
        f" {'ok %':>7} {'achieved':>8} {'proxy CPU':>9} {'upstr CPU':>9} {'TTFB P50':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, modes in grid.items():
        for mode, points in modes.items():
            for rps, p in points.items():
                if "skipped" in p:
                    print(f"{name:16} {mode:6} {rps:>5}  ({p['skipped']})")
                    continue
                print(
                    f"{name:16} {mode:6} {rps:>5} {_fmt(p['latency_p50_ms'])} "
                    f"{_fmt(p['latency_p99_ms'])} {_fmt(p.get('added_latency_p50_ms'))} "
                    f"{_fmt(p.get('added_latency_p99_ms'))} {p['success_rate'] * 100:7.2f} "
                    f"{p['achieved_rps']:8.1f} {_fmt(p['proxy_cpu_us_per_request'], 9, 0)} "
                    f"{_fmt(p['upstream_cpu_us_per_request'], 9, 0)} "
                    f"{_fmt(p.get('ttfb_p50_ms'), 8)}"
                )
    print()
    print(
        f"sustained rate (non-streaming; a step holds with success >= 99.9%, added P99 <= "
        f"{MAX_ADDED_P99_MS:g} ms, achieved >= 95%):"
    )
    for name, s in steps.items():
        held = s["sustained_rps"]
        cpu = next(
            (
                st.get("proxy_cpu_us_per_request") or st.get("upstream_cpu_us_per_request")
                for st in reversed(s["steps"])
                if st["holds"]
            ),
            None,
        )
        fail = f"fails at {s['failed_at']}: {s['why']}" if s["failed_at"] else (s["why"] or "")
        print(
            f"  {name:16} {str(held) if held else '-':>6} req/s (capacity without the latency "
            f"bound {s['capacity_rps'] or '-'}; CPU {_fmt(cpu, 5, 0)} us/req)  {fail}"
        )
    lg = result["loadgen"]
    noise = result["noise"]
    print()
    print(
        f"noise: other work kept {_fmt(noise['other_busy_cores_median'], 4)} cores busy "
        f"(median; P90 {_fmt(noise['other_busy_cores_p90'], 4)}) during the grid's windows"
    )
    print(
        f"loadgen: {_fmt(lg['cpu_us_per_request_median'], 5, 0)} us CPU/request; direct floor "
        f"at 500 req/s P50 {_fmt(lg['direct_p50_ms_at_500'])} P99 {_fmt(lg['direct_p99_ms_at_500'])} ms"
    )
    print()
    for name, v in result["targets"].items():
        print(
            f"{name}: added at 500 req/s P50 {_fmt(v['added_p50_ms_at_500'])} ms "
            f"(<= {TARGETS['added_p50_ms_at_500']:g}: {'met' if v['added_p50_met'] else 'MISSED'}), "
            f"P99 {_fmt(v['added_p99_ms_at_500'])} ms "
            f"(<= {TARGETS['added_p99_ms_at_500']:g}: {'met' if v['added_p99_met'] else 'MISSED'})"
        )
        if "sustained_vs_litellm" in v:
            r = v["sustained_vs_litellm"]
            print(
                f"  sustained {v['sustained_rps']} vs LiteLLM {v['litellm_sustained_rps'] or v['litellm_capacity_rps']}"
                f" req/s ({v['litellm_basis']}): "
                f"{_fmt(r, 1, 1)}x (>= {TARGETS['sustained_vs_litellm']:g}x: "
                f"{'met' if v['sustained_vs_litellm_met'] else 'MISSED'})"
            )
        if "added_vs_nginx_p50" in v:
            print(
                f"  added vs nginx at 500 req/s: P50 {_fmt(v['added_vs_nginx_p50'], 1, 1)}x, "
                f"P99 {_fmt(v['added_vs_nginx_p99'], 1, 1)}x (<= {TARGETS['added_vs_nginx']:g}x: "
                f"{'met' if v['added_vs_nginx_met'] else 'MISSED'})"
            )
    for name, v in result["targets"].items():
        if v.get("floor_added_p50_ms_at_500") is not None:
            print(
                f"{name}: the bare Python proxy adds P50 {_fmt(v['floor_added_p50_ms_at_500'])} / "
                f"P99 {_fmt(v['floor_added_p99_ms_at_500'])} ms at 500 req/s "
                f"({_fmt(v.get('floor_vs_nginx_p50'), 1, 1)}x nginx at P50); the gateway's own work "
                f"{_fmt(v['over_floor_p50_ms'])} / {_fmt(v['over_floor_p99_ms'])} ms above it"
            )
    if result.get("routing_decision"):
        rd = result["routing_decision"]
        print(
            f"\nrouting decision ({rd.get('candidates')} candidates): "
            f"P50 {rd['isthmus_us']['p50']:.1f} us, P99 {rd['isthmus_us']['p99']:.1f} us"
        )
    for name, prof in result.get("profile", {}).items():
        if "self_top" not in prof:
            continue
        print(
            f"\nprofile {name} at {prof['rps']} req/s ({prof['samples']} samples), top self time:"
        )
        for row in prof["self_top"][:10]:
            print(f"  {row['pct']:5.1f}%  {row['function']}")
        split = ", ".join(
            f"{r['component']} {r['pct']:.0f}%" for r in prof["self_by_component"][:8]
        )
        print(f"  by component: {split}")
    if result["failures"]:
        print("\nfailures:")
        for line in result["failures"]:
            print(f"  {line}")


# -- main --------------------------------------------------------------------------------------
def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, 5 s steps (smoke run)")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-nginx", action="store_true")
    parser.add_argument("--skip-granian", action="store_true")
    parser.add_argument(
        "--skip-floor", action="store_true", help="skip the bare Python proxy (the floor)"
    )
    parser.add_argument(
        "--skip-guard", action="store_true", help="skip the gateway with inspection on"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--reps", type=int, default=None, help="grid repetitions (default 3)")
    parser.add_argument("--seconds", type=float, default=None, help="grid seconds per repetition")
    parser.add_argument("--step-seconds", type=float, default=None)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        help="seconds to wait at most for other work on the machine to stop (default 60)",
    )
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    grid_load = Load(seconds=args.seconds or (5.0 if args.quick else 4.0), warmup=1.0)
    step_load = Load(seconds=args.step_seconds or (5.0 if args.quick else 6.0), warmup=1.0)
    output = args.output or RESULTS / (
        "gateway_overhead_quick.json" if args.quick else "gateway_overhead.json"
    )
    signal.signal(signal.SIGTERM, _terminate)
    # explicit: a shell starts background jobs with SIGINT ignored, and Python keeps that
    signal.signal(signal.SIGINT, _terminate)
    started = time.monotonic()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="isthmus-overhead-") as tmp:
        scratch = Path(tmp)
        (scratch / "logs").mkdir()
        children = Children(scratch / "logs")
        try:
            result = _run(args, reps, grid_load, step_load, children, scratch, failures)
        except BaseException as exc:
            if not isinstance(exc, SystemExit | KeyboardInterrupt):  # a failure: show the logs
                for log in sorted(children.logs.glob("*.log")):
                    print(f"--- {log.name}:\n{children.tail(log.stem, 800)}", file=sys.stderr)
            else:
                print("interrupted: stopping every child process", file=sys.stderr)
            raise
        finally:
            children.stop_all()
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result)
    print(
        f"\nwrote {output.relative_to(REPO) if output.is_relative_to(REPO) else output} "
        f"in {result['elapsed_s']:.0f} s"
    )
    return 0


def _run(
    args: argparse.Namespace,
    reps: int,
    grid_load: Load,
    step_load: Load,
    children: Children,
    scratch: Path,
    failures: list[str],
) -> dict[str, Any]:
    busy = wait_for_quiet(args.wait_quiet)
    info = {"machine": machine()}
    info["machine"]["busy_cores_before_start"] = round(busy, 3)
    if busy >= NOISY_CORES:
        print(f"  warning: other work keeps {busy:.2f} cores busy; figures will be noisy")
    print("starting the upstream and the proxies...", flush=True)
    upstream = start_emulator(children)
    port = upstream.info["port"]
    proxies: list[Proxy] = []
    starters: list[tuple[str, Any]] = [
        ("isthmus", lambda: start_isthmus(children, port, "uvicorn"))
    ]
    if not args.skip_guard:
        starters.append(
            ("isthmus-guard", lambda: start_isthmus(children, port, "uvicorn", guard=True))
        )
    if not args.skip_granian:
        starters.append(("isthmus-granian", lambda: start_isthmus(children, port, "granian")))
    if not args.skip_floor:
        starters.append(("python-floor", lambda: start_python_floor(children, port)))
    if not args.skip_nginx:
        starters.append(("nginx", lambda: start_nginx(children, port, scratch)))
    if not args.skip_litellm:
        starters.append(("litellm", lambda: start_litellm(children, port, scratch)))
    for name, start in starters:
        t0 = time.monotonic()
        try:
            proxies.append(start())
            print(f"  {name} ready in {time.monotonic() - t0:.1f} s", flush=True)
        except Exception as exc:
            failures.append(f"{name} did not start: {exc}; log: {children.tail(name, 600)!r}")
            print(f"  {name} FAILED to start: {exc}", flush=True)
    for proxy in proxies:  # warm every path (connection pools, imports, JIT-free caches)
        for _ in range(20):
            probe(proxy.url, stream=False)
            probe(proxy.url, stream=True)
        if proxy.pid is not None:
            settle(proxy.pid, max_wait_s=20)

    print(
        f"grid: {reps} x {grid_load.seconds:g} s per point (+{grid_load.warmup:g} s warm-up)",
        flush=True,
    )
    grid = phase_grid(children, upstream, proxies, reps, grid_load, failures)
    print(f"sustained rate: {step_load.seconds:g} s steps", flush=True)
    steps = phase_steps(children, upstream, proxies, step_load, not args.quick, failures)
    profile: dict[str, Any] = {}
    if not args.no_profile:
        print(f"profiling the gateway at {PROFILE_RPS} req/s...", flush=True)
        profile = phase_profile(children, upstream, proxies, 5.0 if args.quick else 8.0, failures)
    routing = phase_routing_decision(failures)

    direct500 = grid.get("direct", {}).get("plain", {}).get("500", {})
    grid_runs = [
        r
        for modes in grid.values()
        for points in modes.values()
        for p in points.values()
        for r in p.get("runs", [])
    ]
    loadgen_costs = [r["loadgen_cpu_us_per_request"] for r in grid_runs]
    other = sorted(r.get("other_busy_cores", 0.0) for r in grid_runs)
    return {
        "benchmark": "gateway_overhead",
        **info,
        "versions": versions(not args.skip_litellm),
        "settings": {
            "reps": reps,
            "grid_seconds": grid_load.seconds,
            "grid_warmup_s": grid_load.warmup,
            "step_seconds": step_load.seconds,
            "step_retry": not args.quick,
            "arrivals": "poisson",
            "request": json.loads(request_body(False)),
            "grid_rates": GRID_RATES,
            "step_ladder": STEP_LADDER,
            "step_rule": {
                "min_success": MIN_SUCCESS,
                "max_added_p99_ms": MAX_ADDED_P99_MS,
                "min_achieved_fraction": MIN_ACHIEVED,
            },
            "quick": args.quick,
        },
        "configurations": {
            p.name: {k: v for k, v in p.info.items() if k != "port"} for p in [upstream, *proxies]
        },
        "loadgen": {
            "what": "bench/loadgen.py: raw asyncio + uvloop + httptools, open loop, its own process",
            "cpu_us_per_request_median": _med(loadgen_costs),
            "direct_p50_ms_at_500": direct500.get("latency_p50_ms"),
            "direct_p99_ms_at_500": direct500.get("latency_p99_ms"),
            "direct_sustained_rps": steps.get("direct", {}).get("sustained_rps"),
        },
        "noise": {
            "what": "CPU cores busy with work other than the loadgen, the proxy and the upstream, "
            "during the grid's measured windows (0 = a quiet machine)",
            "other_busy_cores_median": _med(other),
            "other_busy_cores_p90": other[int(0.9 * (len(other) - 1))] if other else None,
            "cpu_pressure": _cpu_pressure(),
        },
        "grid": grid,
        "sustained": steps,
        "targets": verdicts(grid, steps),
        "target_definitions": TARGETS,
        "routing_decision": routing,
        "profile": profile,
        "failures": failures,
    }


if __name__ == "__main__":
    sys.exit(main())
