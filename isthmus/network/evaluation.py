"""Held-out evaluation of RTT models on the measured matrix: samples, splits, error summaries.

Shared by ``scripts/calibrate_rtt.py``, ``bench/rtt_estimator.py`` and the tests, so the numbers
each reports come from one definition of "held out".

Invariants:

* A split is a pure function of (pairs, fraction, seed): the pairs are sorted, then shuffled by
  ``random.Random(seed)``, so the same packaged data and seed give the same split everywhere.
* :func:`split_by_pairs` holds out a fraction of region *pairs*; every region still appears in
  training. :func:`split_by_regions` holds out whole regions: training sees only pairs between
  the remaining regions, and every held-out pair touches at least one region never seen.
* Relative error is ``|estimate - measured| / measured``; P90 interpolates linearly between
  order statistics (numpy's default).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from isthmus.network.corridors import corridor_between
from isthmus.network.geo import great_circle_km
from isthmus.network.rtt_model import RttModel, RttSample
from isthmus.network.tables import measured_rtt_pairs, region_point

__all__ = [
    "ErrorSummary",
    "LabelledPair",
    "Split",
    "labelled_pairs",
    "quantile",
    "relative_errors",
    "split_by_pairs",
    "split_by_regions",
]


class LabelledPair(NamedTuple):
    """A measured region pair with the geometry the model sees."""

    region_a: str
    region_b: str
    distance_km: float
    rtt_ms: float
    corridor: str | None

    @property
    def sample(self) -> RttSample:
        return RttSample(self.distance_km, self.rtt_ms, self.corridor)


@dataclass(frozen=True)
class Split:
    """Training and held-out pairs; ``held_out_regions`` is empty for a pair split."""

    training: tuple[LabelledPair, ...]
    held_out: tuple[LabelledPair, ...]
    held_out_regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ErrorSummary:
    """Median, P90 and maximum relative error over ``pairs`` pairs."""

    pairs: int
    median_relative_error: float
    p90_relative_error: float
    max_relative_error: float

    @classmethod
    def from_errors(cls, errors: Iterable[float]) -> ErrorSummary:
        ordered = sorted(errors)
        if not ordered:
            raise ValueError("cannot summarise an empty set of errors")
        return cls(len(ordered), quantile(ordered, 0.5), quantile(ordered, 0.9), ordered[-1])

    def to_json(self) -> dict[str, float | int]:
        return {
            "pairs": self.pairs,
            "median_relative_error": round(self.median_relative_error, 6),
            "p90_relative_error": round(self.p90_relative_error, 6),
            "max_relative_error": round(self.max_relative_error, 6),
        }


def labelled_pairs() -> tuple[LabelledPair, ...]:
    """Every packaged measured pair whose two regions have coordinates, sorted by region ids."""
    pairs = []
    for measured in measured_rtt_pairs():
        a, b = region_point(measured.region_a), region_point(measured.region_b)
        if a is None or b is None:
            continue
        pairs.append(
            LabelledPair(
                region_a=measured.region_a,
                region_b=measured.region_b,
                distance_km=great_circle_km(a.lat, a.lon, b.lat, b.lon),
                rtt_ms=measured.avg_rtt_ms,
                corridor=corridor_between(a.country_code, b.country_code),
            )
        )
    return tuple(sorted(pairs))


def split_by_pairs(pairs: Sequence[LabelledPair], *, holdout_fraction: float, seed: int) -> Split:
    """Hold out ``round(holdout_fraction * len(pairs))`` pairs chosen by ``seed``."""
    _check_fraction(holdout_fraction)
    shuffled = sorted(pairs)
    random.Random(seed).shuffle(shuffled)
    cut = round(holdout_fraction * len(shuffled))
    return Split(training=tuple(sorted(shuffled[cut:])), held_out=tuple(sorted(shuffled[:cut])))


def split_by_regions(pairs: Sequence[LabelledPair], *, holdout_fraction: float, seed: int) -> Split:
    """Hold out ``round(holdout_fraction * regions)`` whole regions chosen by ``seed``."""
    _check_fraction(holdout_fraction)
    regions = sorted({region for pair in pairs for region in (pair.region_a, pair.region_b)})
    random.Random(seed).shuffle(regions)
    held = frozenset(regions[: round(holdout_fraction * len(regions))])
    training = [p for p in pairs if p.region_a not in held and p.region_b not in held]
    held_out = [p for p in pairs if p.region_a in held or p.region_b in held]
    return Split(tuple(sorted(training)), tuple(sorted(held_out)), tuple(sorted(held)))


def relative_errors(model: RttModel, pairs: Iterable[LabelledPair]) -> list[float]:
    """``|estimate - measured| / measured`` for each pair, in order."""
    return [
        abs(model.estimate_ms(pair.distance_km, pair.corridor) - pair.rtt_ms) / pair.rtt_ms
        for pair in pairs
    ]


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of already-sorted values, interpolating between order statistics."""
    if not ordered:
        raise ValueError("quantile of an empty sequence")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q must be within [0, 1], got {q}")
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _check_fraction(holdout_fraction: float) -> None:
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be within (0, 1), got {holdout_fraction}")
