from __future__ import annotations

import math

import pytest

from isthmus.network.geo import MEAN_EARTH_RADIUS_KM, GeoPoint, great_circle_km

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
NEW_YORK = (40.7128, -74.0060)
SYDNEY = (-33.8688, 151.2093)


@pytest.mark.parametrize(
    ("a", "b", "expected_km"),
    [
        (PARIS, LONDON, 344.0),
        (LONDON, NEW_YORK, 5570.0),
        (NEW_YORK, SYDNEY, 15990.0),
    ],
)
def test_known_city_pairs(
    a: tuple[float, float], b: tuple[float, float], expected_km: float
) -> None:
    assert great_circle_km(*a, *b) == pytest.approx(expected_km, rel=0.005)


def test_symmetric_and_zero_on_the_diagonal() -> None:
    assert great_circle_km(*PARIS, *SYDNEY) == great_circle_km(*SYDNEY, *PARIS)
    assert great_circle_km(*PARIS, *PARIS) == 0.0


def test_antipodes_are_half_the_circumference() -> None:
    assert great_circle_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * MEAN_EARTH_RADIUS_KM)
    assert great_circle_km(90.0, 0.0, -90.0, 0.0) == pytest.approx(math.pi * MEAN_EARTH_RADIUS_KM)


def test_geopoint_rejects_impossible_coordinates() -> None:
    with pytest.raises(ValueError, match="latitude"):
        GeoPoint(91.0, 0.0)
    with pytest.raises(ValueError, match="longitude"):
        GeoPoint(0.0, 181.0)
