"""The guard's CPU per request for the gateway benchmark's request shape, in process.

``bench/gateway_overhead.py`` sends one chat request ("Say something short.", ``max_tokens``
8) through the gateway with the default guard policy on (``bench/serve_gateway.py --guard``);
this script times, in one thread and without any network, the guard calls the gateway makes
for it — the fixed per-request cost of inspection, which detection work on a 4-word prompt
does not explain:

- ``inspect_request``: ``Guard.inspect_request`` with that one user message and
  ``max_output_tokens=8`` (``Gateway._inspect_request``);
- ``plain_output``: ``Guard.inspect_output`` on an 8-token answer (``_inspect_response``);
- ``streamed_output``: ``Guard.output_filter`` wrapped in ``GuardedStream`` and fed the same
  answer as the emulator streams it, one upstream read per SSE event (8 token events, the
  finish event, ``[DONE]``), as ``Gateway._stream`` does;
- ``streamed_output_one_read``: the same stream arriving in a single read (what the
  zero-timing emulator's short answers look like to the gateway).

The guard is built as the benchmark builds it: ``Guard(GuardPolicy())``, no content hasher.
Each figure is CPU µs per call (the measuring thread's CPU time, which other processes on a
shared machine inflate less than wall time): the median and the minimum over ``--repeats``
repeats of ``--iterations`` calls each.

``--baseline REV``: the same measurement of the code at git revision ``REV`` (exported to a
scratch directory, this script copied in and run there), alternated with this tree's
``--rounds`` times, so the load on a shared machine hits both alike; each figure is then the
median over rounds.

    .venv/bin/python bench/guard_request_cost.py [--iterations 3000] [--repeats 9]
        [--baseline REV [--rounds 3]]

Writes ``bench/results/guard_request_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import cpu_model  # noqa: E402  (bench/ is on sys.path: the scripts' folder)

from isthmus.engines.emulator.protocol import Generation  # noqa: E402
from isthmus.engines.emulator.responses import (  # noqa: E402
    DONE,
    StreamChunks,
    filler_token,
)
from isthmus.gateway.sse_guard import GuardedStream  # noqa: E402
from isthmus.guard import Guard, GuardPolicy  # noqa: E402

TENANT = "bench"
PROMPT = "Say something short."
MAX_TOKENS = 8
SEED = 3


def answer_tokens() -> list[str]:
    """The emulator's 8-token answer, token by token."""
    return [filler_token(SEED, i) for i in range(MAX_TOKENS)]


def sse_events() -> list[bytes]:
    """The answer as the emulator streams it: one SSE event per token, the finish, [DONE]."""
    generation = Generation("chat", "zero", PROMPT.split(), MAX_TOKENS, True, True, False)
    chunks = StreamChunks(generation, "bench1")
    events = [chunks.token(text, i == 0) for i, text in enumerate(answer_tokens())]
    return [*events, chunks.finish("length"), DONE]


def calls(guard: Guard) -> dict[str, Callable[[], object]]:
    """One gateway request's guard work for each case (see the module docstring)."""
    messages = [{"role": "user", "content": PROMPT}]
    text = "".join(answer_tokens())
    events = sse_events()
    whole = b"".join(events)

    def inspect_request() -> object:
        return guard.inspect_request(TENANT, messages, tools=None, max_output_tokens=MAX_TOKENS)

    def plain_output() -> object:
        return guard.inspect_output(TENANT, text)

    def streamed_output() -> object:
        stream = GuardedStream(guard.output_filter(TENANT), "chat")
        return [stream.feed(event) for event in events]

    def streamed_output_one_read() -> object:
        return GuardedStream(guard.output_filter(TENANT), "chat").feed(whole)

    return {
        "inspect_request": inspect_request,
        "plain_output": plain_output,
        "streamed_output": streamed_output,
        "streamed_output_one_read": streamed_output_one_read,
    }


def time_call(call: Callable[[], object], iterations: int, repeats: int) -> dict[str, float]:
    """CPU µs per call: median and minimum over repeats of ``iterations`` calls."""
    for _ in range(min(iterations, 500)):  # warm caches (per-tenant settings, lazy imports)
        call()
    per_call: list[float] = []
    for _ in range(repeats):
        started = time.thread_time_ns()
        for _ in range(iterations):
            call()
        per_call.append((time.thread_time_ns() - started) / iterations / 1000.0)
    return {
        "median_us": round(statistics.median(per_call), 2),
        "min_us": round(min(per_call), 2),
    }


def measure(iterations: int, repeats: int) -> dict[str, dict[str, float]]:
    """Every case's figures for the code this script imports."""
    guard = Guard(GuardPolicy())
    return {name: time_call(call, iterations, repeats) for name, call in calls(guard).items()}


def measure_revision(revision: str, iterations: int, repeats: int) -> dict[str, Any]:
    """The figures of the code at git ``revision``, measured by this script run in a scratch
    export of that revision (its ``bench/`` may not have the script yet)."""
    with tempfile.TemporaryDirectory(prefix="guard-cost-") as scratch:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", scratch], input=archive.stdout, check=True)
        script = Path(scratch) / "bench" / Path(__file__).name
        shutil.copy(__file__, script)
        out = Path(scratch) / "figures.json"
        subprocess.run(
            [sys.executable, str(script), "--iterations", str(iterations),
             "--repeats", str(repeats), "--out", str(out)],
            check=True, capture_output=True,
        )  # fmt: skip
        figures: dict[str, Any] = json.loads(out.read_text())["us_per_call"]
        return figures


def median_of_rounds(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        name: {
            key: round(statistics.median(r[name][key] for r in rounds), 2)
            for key in ("median_us", "min_us")
        }
        for name in rounds[0]
    }


def print_figures(label: str, figures: dict[str, dict[str, float]]) -> None:
    print(label)
    for name, figure in figures.items():
        print(
            f"  {name:26s} median {figure['median_us']:8.1f} µs   min {figure['min_us']:8.1f} µs",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--baseline", metavar="REV", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="with --baseline: alternations")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "guard_request_cost.json"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "request": {"prompt": PROMPT, "max_output_tokens": MAX_TOKENS, "answer_tokens": 8},
        "iterations": args.iterations,
        "repeats": args.repeats,
    }
    if args.baseline is None:
        results["us_per_call"] = measure(args.iterations, args.repeats)
    else:
        ours, theirs = [], []
        for _ in range(args.rounds):
            theirs.append(measure_revision(args.baseline, args.iterations, args.repeats))
            ours.append(measure(args.iterations, args.repeats))
        results["rounds"] = args.rounds
        results["us_per_call"] = median_of_rounds(ours)
        results["baseline"] = {"revision": args.baseline, "us_per_call": median_of_rounds(theirs)}
        print_figures(f"baseline {args.baseline}", results["baseline"]["us_per_call"])
    print_figures("this tree", results["us_per_call"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
