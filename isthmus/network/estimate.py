"""RTT between two places: measured where a measurement exists, modelled otherwise.

Invariant: a measured RTT always wins over the model; the model (by default the one calibrated
on the measured matrix) is used only for pairs nobody measured, such as an edge site or an
on-prem cluster, and then only from the two places' coordinates and countries.
"""

from __future__ import annotations

from isthmus.network.corridors import corridor_between
from isthmus.network.geo import GeoPoint, great_circle_km
from isthmus.network.rtt_model import RttModel, default_model
from isthmus.network.tables import measured_rtt_ms, region_point

__all__ = ["estimate_rtt_ms", "region_rtt_ms"]


def estimate_rtt_ms(a: GeoPoint, b: GeoPoint, model: RttModel | None = None) -> float:
    """Modelled RTT in ms between two places (corridor from their countries, if both known)."""
    chosen = default_model() if model is None else model
    distance_km = great_circle_km(a.lat, a.lon, b.lat, b.lon)
    return chosen.estimate_ms(distance_km, corridor_between(a.country_code, b.country_code))


def region_rtt_ms(region_a: str, region_b: str, model: RttModel | None = None) -> float | None:
    """Measured RTT between two regions if measured, else modelled; None if either is unplaced."""
    measured = measured_rtt_ms(region_a, region_b)
    if measured is not None:
        return measured
    a, b = region_point(region_a), region_point(region_b)
    if a is None or b is None:
        return None
    return estimate_rtt_ms(a, b, model)
