"""How well does the RTT estimator predict measured cloud-region RTTs it was not fitted on?

Usage (from the repository root, with the package installed or ``PYTHONPATH=.``)::

    python bench/rtt_estimator.py

Fits on the training side of the seeded splits used by ``scripts/calibrate_rtt.py`` and reports
median / P90 / max relative error on the held-out side, for:

* ``calibrated, corridors``: the shipped model form (fixed overhead + route factor per
  continental corridor);
* ``calibrated, distance only``: the same fit with corridor labels withheld (one route factor);
* ``fibre, route factor 1``: light in fibre along the great circle, no overhead (a lower bound);
* ``rule of thumb 1 ms/100 km``: the often-quoted RTT rule, which is route factor 1.02.

Baselines run in the same process on the same held-out pairs. Writes
``bench/results/rtt_estimator.json``. Accuracy only: no timing claim is made beyond the fit's
wall time, which is printed for information.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from isthmus.network.evaluation import (
    ErrorSummary,
    Split,
    labelled_pairs,
    relative_errors,
    split_by_pairs,
    split_by_regions,
)
from isthmus.network.rtt_model import FIBRE_KM_PER_MS, RttModel, calibrate

SEED = 0
HOLDOUT_FRACTION = 0.2
RESULTS = Path(__file__).resolve().parent / "results" / "rtt_estimator.json"

FIBRE_ONLY = RttModel(fixed_ms=0.0, route_factor=1.0)
# 1 ms of RTT per 100 km is 2 * 100 km * factor / 204 km/ms = 1 ms, i.e. factor 1.02.
RULE_OF_THUMB = RttModel(fixed_ms=0.0, route_factor=FIBRE_KM_PER_MS / 200.0)


def evaluate(split: Split) -> tuple[list[dict[str, object]], float]:
    """Rows for every estimator on ``split``'s held-out pairs, and the corridor fit's seconds."""
    started = time.perf_counter()
    corridor_model = calibrate([pair.sample for pair in split.training])
    fit_seconds = time.perf_counter() - started
    distance_model = calibrate([(pair.distance_km, pair.rtt_ms) for pair in split.training])
    estimators = (
        ("calibrated, corridors", corridor_model),
        ("calibrated, distance only", distance_model),
        ("fibre, route factor 1", FIBRE_ONLY),
        ("rule of thumb 1 ms/100 km", RULE_OF_THUMB),
    )
    rows: list[dict[str, object]] = []
    for name, model in estimators:
        summary = ErrorSummary.from_errors(relative_errors(model, split.held_out))
        rows.append(
            {
                "estimator": name,
                "fixed_ms": round(model.fixed_ms, 4),
                "route_factor": round(model.route_factor, 4),
                "corridors": len(model.corridor_route_factors),
                **summary.to_json(),
            }
        )
    return rows, fit_seconds


def main() -> int:
    pairs = labelled_pairs()
    splits = {
        "held-out pairs": split_by_pairs(pairs, holdout_fraction=HOLDOUT_FRACTION, seed=SEED),
        "held-out regions": split_by_regions(pairs, holdout_fraction=HOLDOUT_FRACTION, seed=SEED),
    }
    results: dict[str, object] = {
        "benchmark": "rtt_estimator",
        "data": "skyplane measured RTT, 2,346 cloud-region pairs (isthmus/network/data)",
        "seed": SEED,
        "holdout_fraction": HOLDOUT_FRACTION,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "load": "none (accuracy benchmark, single process)",
    }
    header = f"{'split':17s} {'estimator':27s} {'n':>5s} {'median':>7s} {'P90':>7s} {'max':>7s}"
    print(header)
    print("-" * len(header))
    for split_name, split in splits.items():
        rows, fit_seconds = evaluate(split)
        results[split_name] = {
            "training_pairs": len(split.training),
            "held_out_regions": list(split.held_out_regions),
            "fit_seconds": round(fit_seconds, 4),
            "rows": rows,
        }
        for row in rows:
            print(
                f"{split_name:17s} {row['estimator']!s:27s} {row['pairs']:5d} "
                f"{row['median_relative_error']:7.1%} {row['p90_relative_error']:7.1%} "
                f"{row['max_relative_error']:7.1%}"
            )
        print(f"{'':17s} (corridor fit on {len(split.training)} pairs: {fit_seconds:.2f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
