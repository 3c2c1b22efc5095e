"""Points on the Earth and the distance between them.

Invariant: distances are great-circle (haversine) distances on a sphere of the IUGG mean Earth
radius, 6371.0088 km. The spherical model is within 0.5% of the ellipsoidal distance, far below
the scatter of network paths around the great circle, so nothing here needs an ellipsoid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MEAN_EARTH_RADIUS_KM", "GeoPoint", "great_circle_km"]

MEAN_EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class GeoPoint:
    """A place: latitude and longitude in degrees, and its ISO 3166-1 alpha-2 country if known.

    The country is what picks the continent, hence the network corridor, of a path.
    """

    lat: float
    lon: float
    country_code: str | None = None

    def __post_init__(self) -> None:
        if not -90.0 <= self.lat <= 90.0:
            raise ValueError(f"latitude must be within [-90, 90] degrees, got {self.lat}")
        if not -180.0 <= self.lon <= 180.0:
            raise ValueError(f"longitude must be within [-180, 180] degrees, got {self.lon}")


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees (haversine formula).

    Symmetric, zero for identical points, at most half the Earth's circumference (~20,015 km).
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2.0
    half_dlambda = math.radians(lon2 - lon1) / 2.0
    h = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    # min() guards against h creeping above 1 by rounding for antipodal points.
    return 2.0 * MEAN_EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))
