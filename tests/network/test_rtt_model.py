from __future__ import annotations

import random

import pytest

from isthmus.network.corridors import corridor_between
from isthmus.network.rtt_model import (
    FIBRE_KM_PER_MS,
    RttModel,
    calibrate,
    default_model,
    model_from_json,
    model_to_json,
)


def synthetic(
    fixed_ms: float, route_factor: float, corridor: str | None, count: int, noise: float, seed: int
) -> list[tuple[float, float, str | None]]:
    rng = random.Random(seed)
    samples: list[tuple[float, float, str | None]] = []
    for _ in range(count):
        distance_km = rng.uniform(50.0, 15_000.0)
        rtt_ms = fixed_ms + 2.0 * distance_km * route_factor / FIBRE_KM_PER_MS
        samples.append((distance_km, rtt_ms * (1.0 + rng.uniform(-noise, noise)), corridor))
    return samples


def test_estimate_follows_the_physics() -> None:
    model = RttModel(fixed_ms=2.0, route_factor=1.5)
    assert model.estimate_ms(0.0) == 2.0
    assert model.estimate_ms(1020.0) == pytest.approx(2.0 + 2.0 * 1020.0 * 1.5 / 204.0)


def test_corridor_factor_overrides_the_global_one() -> None:
    model = RttModel(2.0, 1.5, (("Asia-Europe", 2.3),))
    assert model.route_factor_for("Asia-Europe") == 2.3
    assert model.route_factor_for("Europe-Europe") == 1.5
    assert model.route_factor_for(None) == 1.5


def test_calibration_recovers_exact_parameters() -> None:
    samples = [(d, r) for d, r, _ in synthetic(3.0, 1.7, None, 200, 0.0, seed=1)]
    model = calibrate(samples)
    assert model.fixed_ms == pytest.approx(3.0, abs=1e-3)
    assert model.route_factor == pytest.approx(1.7, rel=1e-4)
    assert model.corridor_route_factors == ()


def test_calibration_recovers_corridor_factors_under_noise() -> None:
    samples = synthetic(2.5, 2.3, "Asia-Europe", 300, 0.1, seed=2) + synthetic(
        2.5, 1.4, "Asia-North America", 300, 0.1, seed=3
    )
    model = calibrate(samples)
    assert model.fixed_ms == pytest.approx(2.5, abs=1.0)
    assert model.route_factor_for("Asia-Europe") == pytest.approx(2.3, rel=0.03)
    assert model.route_factor_for("Asia-North America") == pytest.approx(1.4, rel=0.03)
    assert 1.4 < model.route_factor < 2.3


def test_sparse_corridors_fall_back_to_the_global_factor() -> None:
    samples = synthetic(2.0, 1.6, "Europe-Europe", 50, 0.0, seed=4) + synthetic(
        2.0, 4.0, "Africa-South America", 3, 0.0, seed=5
    )
    model = calibrate(samples, min_pairs_per_corridor=10)
    assert [name for name, _ in model.corridor_route_factors] == ["Europe-Europe"]


def test_robust_to_a_minority_of_wild_outliers() -> None:
    samples = [(d, r) for d, r, _ in synthetic(2.0, 1.6, None, 200, 0.0, seed=6)]
    samples += [(d, r * 10.0) for d, r in samples[:30]]
    model = calibrate(samples)
    assert model.route_factor == pytest.approx(1.6, rel=0.02)


def test_calibration_rejects_unusable_samples() -> None:
    with pytest.raises(ValueError, match="distance_km > 0"):
        calibrate([(0.0, 1.0)])
    with pytest.raises(ValueError, match="rtt_ms"):
        calibrate([(100.0, 0.0)])


def test_model_rejects_factors_below_one() -> None:
    with pytest.raises(ValueError, match="great circle"):
        RttModel(fixed_ms=1.0, route_factor=0.9)


def test_json_round_trip() -> None:
    model = RttModel(2.25, 1.66, (("Asia-Europe", 2.3), ("Europe-Europe", 1.95)))
    assert model_from_json(model_to_json(model)) == model


def test_default_model_is_the_calibrated_one() -> None:
    model = default_model()
    assert 0.0 <= model.fixed_ms < 10.0
    assert 1.0 <= model.route_factor < 3.0
    assert model.route_factor_for("Asia-Europe") > model.route_factor_for("Asia-North America")


def test_corridor_is_unordered_and_unknown_countries_have_none() -> None:
    assert corridor_between("DE", "JP") == corridor_between("jp", "de") == "Asia-Europe"
    assert corridor_between("FR", "FR") == "Europe-Europe"
    assert corridor_between("FR", None) is None
    assert corridor_between("FR", "ZZ") is None
