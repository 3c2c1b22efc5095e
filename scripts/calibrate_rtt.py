"""Reproduce ``isthmus/network/data/rtt_calibration.json`` from the packaged network tables.

Usage (from the repository root, with the package installed or ``PYTHONPATH=.``)::

    python scripts/calibrate_rtt.py            # refit and rewrite the calibration file
    python scripts/calibrate_rtt.py --check    # refit and fail if the committed file differs

Two held-out evaluations, both seeded and deterministic:

* pairs: 20% of measured region pairs are held out; the model fitted on the other 80% is the
  one shipped as ``default_model()``, so its held-out figures describe exactly what users get;
* regions: 20% of regions are held out entirely (training never sees any pair touching them),
  which is the situation of a new site the matrix has never measured.

Prints the median and P90 relative error on held-out pairs for both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from isthmus.network.evaluation import (
    ErrorSummary,
    LabelledPair,
    Split,
    labelled_pairs,
    relative_errors,
    split_by_pairs,
    split_by_regions,
)
from isthmus.network.rtt_model import RttModel, calibrate, model_from_json, model_to_json

SEED = 0
HOLDOUT_FRACTION = 0.2
MIN_PAIRS_PER_CORRIDOR = 10
OUTPUT = Path(__file__).resolve().parent.parent / "isthmus/network/data/rtt_calibration.json"


def fit(training: tuple[LabelledPair, ...]) -> RttModel:
    """Fit, then round-trip through JSON so reported errors are those of the stored constants."""
    model = calibrate(
        [pair.sample for pair in training], min_pairs_per_corridor=MIN_PAIRS_PER_CORRIDOR
    )
    return model_from_json(model_to_json(model))


def held_out_summary(model: RttModel, split: Split) -> ErrorSummary:
    return ErrorSummary.from_errors(relative_errors(model, split.held_out))


def calibration_document() -> dict[str, object]:
    pairs = labelled_pairs()
    by_pairs = split_by_pairs(pairs, holdout_fraction=HOLDOUT_FRACTION, seed=SEED)
    by_regions = split_by_regions(pairs, holdout_fraction=HOLDOUT_FRACTION, seed=SEED)
    model = fit(by_pairs.training)
    region_model = fit(by_regions.training)
    distance_only = RttModel(model.fixed_ms, model.route_factor)
    return {
        "about": (
            "RTT model calibrated on skyplane's measured cloud-region RTT matrix (Apache-2.0) "
            "placed with dgl/cloud-regions coordinates (ODbL-1.0, (c) OpenStreetMap "
            "contributors); produced by scripts/calibrate_rtt.py, see data/SOURCES.md"
        ),
        "model": model_to_json(model),
        "fit": {
            "method": (
                "minimise sum |estimate - rtt| / rtt: golden-section search on fixed_ms, "
                "weighted-median route factor per corridor (factors >= 1)"
            ),
            "data": "rtt_measured.csv joined with region_coordinates.csv",
            "seed": SEED,
            "holdout_fraction": HOLDOUT_FRACTION,
            "min_pairs_per_corridor": MIN_PAIRS_PER_CORRIDOR,
            "pairs_available": len(pairs),
            "training_pairs": len(by_pairs.training),
        },
        "held_out_pairs": held_out_summary(model, by_pairs).to_json(),
        "held_out_pairs_distance_only": held_out_summary(distance_only, by_pairs).to_json(),
        "held_out_regions": {
            "regions": list(by_regions.held_out_regions),
            "training_pairs": len(by_regions.training),
            "model": model_to_json(region_model),
            **held_out_summary(region_model, by_regions).to_json(),
        },
    }


def render(document: dict[str, object]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def report(document: dict[str, object]) -> None:
    for key, label in (
        ("held_out_pairs", "held-out pairs (20% of pairs)"),
        ("held_out_regions", "held-out regions (20% of regions)"),
        ("held_out_pairs_distance_only", "held-out pairs, corridors ignored"),
    ):
        figures = document[key]
        assert isinstance(figures, dict)
        print(
            f"{label:36s} n={figures['pairs']:5d}  "
            f"median {figures['median_relative_error']:.1%}  "
            f"P90 {figures['p90_relative_error']:.1%}"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the stored file differs")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="calibration file to write")
    args = parser.parse_args(argv)
    document = calibration_document()
    report(document)
    text = render(document)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: rerun scripts/calibrate_rtt.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
