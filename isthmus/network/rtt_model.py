"""Round-trip time from distance: a physical model with calibrated route factors.

The model::

    rtt_ms = fixed_ms + 2 * distance_km * route_factor(corridor) / 204 km/ms

Light in silica fibre travels at c / 1.47, about 204 km per ms, and a round trip covers the path
twice. Real paths are longer than the great circle (``route_factor`` >= 1: cable routes, landing
stations, metro detours) and every probe pays a fixed cost independent of distance
(``fixed_ms``: hypervisor and NIC, switching, the hop to the provider's edge).

Why one route factor per corridor (pair of continents) and not one global factor: on the
skyplane matrix of 2,346 region pairs, distance-only forms stall at ~15% median relative error
even when fitted in-sample to the median itself (linear 15.5%, power law 15.4%, piecewise linear
with short- and long-haul factors 15.1%; a nearest-neighbours-in-distance oracle reaches only
13.7-15%), and at ~16% on held-out pairs. The residual is geographic, not a curve shape:
Europe-Asia paths run ~2.3x the great circle (via Suez), trans-Pacific ones ~1.46x. One factor
per corridor takes held-out median error to ~10% (``bench/rtt_estimator.py``) and stays
explainable: each factor reads as "how crooked is this corridor". A corridor with too few
training pairs, or a path whose corridor is unknown, uses the global ``route_factor``.

The fit (:func:`calibrate`) minimises the sum of absolute *relative* errors,
``sum |estimate - rtt| / rtt``: a weighted least-absolute-deviations problem, robust to the
outlier probes in measured data and aimed at the median relative error the model is judged on.
It is convex in (``fixed_ms``, factors), and for a fixed ``fixed_ms`` each factor's optimum is a
weighted median, so the fit is a golden-section search on ``fixed_ms`` over that exact inner
solution: deterministic, pure Python, no numpy. Factors are constrained to >= 1 (no path beats
the great circle).

Invariant: :meth:`RttModel.estimate_ms` is pure arithmetic on frozen fields, so estimating at run
time needs no data file and no numpy; :func:`default_model` reads the constants calibrated on
the measured matrix from ``data/rtt_calibration.json`` once, lazily.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from isthmus.network.data import read_text

__all__ = [
    "FIBRE_KM_PER_MS",
    "RttModel",
    "RttSample",
    "calibrate",
    "default_model",
    "model_from_json",
    "model_to_json",
]

FIBRE_KM_PER_MS = 204.0
"""Speed of light in silica fibre (c / 1.47), km per millisecond."""

CALIBRATION_FILE = "rtt_calibration.json"
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_FIXED_MS_TOLERANCE = 1e-6


class RttSample(NamedTuple):
    """One measured path: great-circle distance, round-trip time, corridor if known."""

    distance_km: float
    rtt_ms: float
    corridor: str | None = None


@dataclass(frozen=True)
class RttModel:
    """``rtt_ms = fixed_ms + 2 * distance_km * route_factor(corridor) / FIBRE_KM_PER_MS``.

    ``corridor_route_factors`` holds ``(corridor, factor)`` pairs sorted by corridor; corridors
    not listed use ``route_factor``. All factors are >= 1 and ``fixed_ms`` >= 0.
    """

    fixed_ms: float
    route_factor: float
    corridor_route_factors: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fixed_ms) and self.fixed_ms >= 0.0):
            raise ValueError(f"fixed_ms must be a finite number >= 0, got {self.fixed_ms}")
        _check_route_factor("route_factor", self.route_factor)
        corridors = [corridor for corridor, _ in self.corridor_route_factors]
        if corridors != sorted(set(corridors)):
            raise ValueError("corridor_route_factors must be sorted by corridor, without repeats")
        for corridor, factor in self.corridor_route_factors:
            _check_route_factor(f"corridor_route_factors[{corridor!r}]", factor)

    def route_factor_for(self, corridor: str | None) -> float:
        """The route factor of ``corridor``, or the global one if it has none of its own."""
        for name, factor in self.corridor_route_factors:
            if name == corridor:
                return factor
        return self.route_factor

    def estimate_ms(self, distance_km: float, corridor: str | None = None) -> float:
        """Estimated round-trip time in ms over a great-circle distance in km."""
        if distance_km < 0.0:
            raise ValueError(f"distance_km must be >= 0, got {distance_km}")
        factor = self.route_factor_for(corridor)
        return self.fixed_ms + 2.0 * distance_km * factor / FIBRE_KM_PER_MS


def _check_route_factor(name: str, factor: float) -> None:
    if not (math.isfinite(factor) and factor >= 1.0):
        raise ValueError(f"{name} must be a finite number >= 1 (no path beats the great circle)")


def calibrate(
    samples: Sequence[tuple[float, float] | tuple[float, float, str | None]],
    *,
    min_pairs_per_corridor: int = 10,
) -> RttModel:
    """Fit an :class:`RttModel` to ``(distance_km, rtt_ms[, corridor])`` samples.

    Minimises the sum of absolute relative errors. ``fixed_ms`` is chosen for the model with one
    factor per corridor having at least ``min_pairs_per_corridor`` samples (the rest pooled);
    ``route_factor`` is then the best single factor over all samples at that ``fixed_ms``, so it
    is the right fallback for a corridor never seen. Deterministic for a given input order.
    """
    if min_pairs_per_corridor < 1:
        raise ValueError(f"min_pairs_per_corridor must be >= 1, got {min_pairs_per_corridor}")
    checked = [_checked(sample) for sample in samples]
    if not any(sample.distance_km > 0.0 for sample in checked):
        raise ValueError("calibration needs at least one sample with distance_km > 0")
    groups = _corridor_groups(checked, min_pairs_per_corridor)

    def profile_loss(fixed_ms: float) -> float:
        return sum(
            _loss(fixed_ms, _best_route_factor(fixed_ms, members), members)
            for members in groups.values()
        )

    fixed_ms = _golden_section_min(profile_loss, 0.0, max(s.rtt_ms for s in checked))
    corridor_factors = tuple(
        (corridor, _best_route_factor(fixed_ms, members))
        for corridor, members in sorted(groups.items(), key=lambda item: item[0] or "")
        if corridor is not None
    )
    return RttModel(
        fixed_ms=fixed_ms,
        route_factor=_best_route_factor(fixed_ms, checked),
        corridor_route_factors=corridor_factors,
    )


def _checked(sample: tuple[float, float] | tuple[float, float, str | None]) -> RttSample:
    corridor = sample[2] if len(sample) == 3 else None
    distance_km, rtt_ms = float(sample[0]), float(sample[1])
    if not (math.isfinite(distance_km) and distance_km >= 0.0):
        raise ValueError(f"sample distance_km must be finite and >= 0, got {distance_km}")
    if not (math.isfinite(rtt_ms) and rtt_ms > 0.0):
        raise ValueError(f"sample rtt_ms must be finite and > 0, got {rtt_ms}")
    return RttSample(distance_km, rtt_ms, corridor)


def _corridor_groups(
    samples: list[RttSample], min_pairs_per_corridor: int
) -> dict[str | None, list[RttSample]]:
    """Samples by corridor; corridors below the threshold, and unknown ones, pooled under None."""
    by_corridor: dict[str | None, list[RttSample]] = {}
    for sample in samples:
        by_corridor.setdefault(sample.corridor, []).append(sample)
    groups: dict[str | None, list[RttSample]] = {}
    for corridor, members in by_corridor.items():
        has_distance = any(member.distance_km > 0.0 for member in members)
        own = corridor is not None and has_distance and len(members) >= min_pairs_per_corridor
        groups.setdefault(corridor if own else None, []).extend(members)
    return groups


def _loss(fixed_ms: float, route_factor: float, samples: Sequence[RttSample]) -> float:
    km_to_ms = 2.0 * route_factor / FIBRE_KM_PER_MS
    return sum(abs(fixed_ms + km_to_ms * s.distance_km - s.rtt_ms) / s.rtt_ms for s in samples)


def _best_route_factor(fixed_ms: float, samples: Sequence[RttSample]) -> float:
    """argmin over factor >= 1 of the relative L1 loss, for a fixed overhead.

    Each sample's error is ``|2d/v| / rtt * |factor - (rtt - fixed) * v / 2d|``, so the optimum
    is the weighted median of the per-sample implied factors, clamped to >= 1.
    """
    implied = sorted(
        (
            (s.rtt_ms - fixed_ms) * FIBRE_KM_PER_MS / (2.0 * s.distance_km),
            2.0 * s.distance_km / (FIBRE_KM_PER_MS * s.rtt_ms),
        )
        for s in samples
        if s.distance_km > 0.0
    )
    if not implied:
        return 1.0
    half_weight = sum(weight for _, weight in implied) / 2.0
    running = 0.0
    for factor, weight in implied:
        running += weight
        if running >= half_weight:
            return max(1.0, factor)
    return max(1.0, implied[-1][0])


def _golden_section_min(loss: Callable[[float], float], low: float, high: float) -> float:
    """A minimiser of a convex ``loss`` on [low, high], to within ``_FIXED_MS_TOLERANCE``."""
    a, b = low, high
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    loss_c, loss_d = loss(c), loss(d)
    while b - a > _FIXED_MS_TOLERANCE:
        if loss_c <= loss_d:
            b, d, loss_d = d, c, loss_c
            c = b - _GOLDEN * (b - a)
            loss_c = loss(c)
        else:
            a, c, loss_c = c, d, loss_d
            d = a + _GOLDEN * (b - a)
            loss_d = loss(d)
    return (a + b) / 2.0


def model_to_json(model: RttModel) -> dict[str, object]:
    """The JSON form of a model, floats rounded to 6 decimals, as :func:`model_from_json` reads."""
    return {
        "form": "rtt_ms = fixed_ms + 2 * distance_km * route_factor(corridor) / fibre_km_per_ms",
        "fibre_km_per_ms": FIBRE_KM_PER_MS,
        "fixed_ms": round(model.fixed_ms, 6),
        "route_factor": round(model.route_factor, 6),
        "corridor_route_factors": {
            corridor: round(factor, 6) for corridor, factor in model.corridor_route_factors
        },
    }


def model_from_json(document: Mapping[str, object]) -> RttModel:
    """Rebuild a model from :func:`model_to_json` output; errors name the offending field."""
    fibre = document.get("fibre_km_per_ms", FIBRE_KM_PER_MS)
    if fibre != FIBRE_KM_PER_MS:
        raise ValueError(f"fibre_km_per_ms is {fibre!r}; this code assumes {FIBRE_KM_PER_MS}")
    corridors = document.get("corridor_route_factors", {})
    if not isinstance(corridors, Mapping):
        raise ValueError("corridor_route_factors must be an object of corridor -> factor")
    return RttModel(
        fixed_ms=_number(document, "fixed_ms"),
        route_factor=_number(document, "route_factor"),
        corridor_route_factors=tuple(
            sorted((str(name), _number(corridors, name)) for name in corridors)
        ),
    )


def _number(document: Mapping[str, object], key: str) -> float:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key!r} must be a number, got {value!r}")
    return float(value)


@functools.cache
def default_model() -> RttModel:
    """The model calibrated on the measured skyplane matrix (``data/rtt_calibration.json``)."""
    document = json.loads(read_text(CALIBRATION_FILE))
    model = document.get("model") if isinstance(document, dict) else None
    if not isinstance(model, dict):
        raise ValueError(f"{CALIBRATION_FILE}: missing the 'model' object")
    return model_from_json(model)
