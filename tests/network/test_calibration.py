"""Checks on the committed calibration: its figures hold on the packaged data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isthmus.network.estimate import estimate_rtt_ms, region_rtt_ms
from isthmus.network.evaluation import (
    ErrorSummary,
    labelled_pairs,
    quantile,
    relative_errors,
    split_by_pairs,
    split_by_regions,
)
from isthmus.network.geo import GeoPoint
from isthmus.network.rtt_model import default_model
from isthmus.network.tables import measured_rtt_ms

CALIBRATION = Path(__file__).resolve().parents[2] / "isthmus/network/data/rtt_calibration.json"


def stored() -> dict[str, dict[str, float]]:
    document: dict[str, dict[str, float]] = json.loads(CALIBRATION.read_text(encoding="utf-8"))
    return document


def test_default_model_median_error_on_held_out_pairs_is_within_15_percent() -> None:
    fit = stored()["fit"]
    split = split_by_pairs(
        labelled_pairs(), holdout_fraction=fit["holdout_fraction"], seed=int(fit["seed"])
    )
    assert len(split.training) == fit["training_pairs"]
    summary = ErrorSummary.from_errors(relative_errors(default_model(), split.held_out))
    assert summary.median_relative_error <= 0.15
    assert summary.median_relative_error == pytest.approx(
        stored()["held_out_pairs"]["median_relative_error"], abs=1e-6
    )


def test_splits_are_deterministic_and_disjoint() -> None:
    pairs = labelled_pairs()
    first = split_by_pairs(pairs, holdout_fraction=0.2, seed=0)
    assert first == split_by_pairs(pairs, holdout_fraction=0.2, seed=0)
    assert not set(first.training) & set(first.held_out)
    assert len(first.held_out) == round(0.2 * len(pairs))
    by_region = split_by_regions(pairs, holdout_fraction=0.2, seed=0)
    held = set(by_region.held_out_regions)
    assert all(p.region_a not in held and p.region_b not in held for p in by_region.training)
    assert all(p.region_a in held or p.region_b in held for p in by_region.held_out)


def test_quantile_interpolates() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0], 0.9) == 10.0


def test_measurement_wins_over_the_model() -> None:
    assert region_rtt_ms("aws:eu-north-1", "azure:eastus") == measured_rtt_ms(
        "aws:eu-north-1", "azure:eastus"
    )


def test_unmeasured_regions_are_modelled_from_coordinates() -> None:
    estimate = region_rtt_ms("oracle:eu-frankfurt-1", "vultr:ams")
    assert estimate is not None
    assert 5.0 < estimate < 20.0
    assert region_rtt_ms("oracle:eu-frankfurt-1", "mars:olympus-1") is None


def test_estimate_between_points_uses_the_corridor() -> None:
    frankfurt, tokyo = GeoPoint(50.11, 8.68, "DE"), GeoPoint(35.68, 139.76, "JP")
    with_corridor = estimate_rtt_ms(frankfurt, tokyo)
    without = estimate_rtt_ms(GeoPoint(50.11, 8.68), GeoPoint(35.68, 139.76))
    assert with_corridor > without
