"""The network: how far apart places are, how long a round trip takes, what a GB costs to move.

``geo`` measures great-circle distance; ``rtt_model`` turns distance (and the continental
corridor a path runs along) into an RTT estimate calibrated on measured cloud-region RTTs;
``tables`` looks up measured RTT, region coordinates and egress prices; ``estimate`` prefers a
measurement and falls back to the model; ``evaluation`` defines the held-out splits every
reported error figure uses. Nothing here does I/O at import time.
"""

from __future__ import annotations

from isthmus.network.corridors import corridor_between
from isthmus.network.estimate import estimate_rtt_ms, region_rtt_ms
from isthmus.network.geo import GeoPoint, great_circle_km
from isthmus.network.rtt_model import (
    FIBRE_KM_PER_MS,
    RttModel,
    RttSample,
    calibrate,
    default_model,
)
from isthmus.network.tables import (
    INTERNET,
    canonical_region_id,
    egress_usd_per_gb,
    internet_egress_usd_per_gb,
    measured_rtt_ms,
    region_country,
    region_location,
    region_point,
)

__all__ = [
    "FIBRE_KM_PER_MS",
    "INTERNET",
    "GeoPoint",
    "RttModel",
    "RttSample",
    "calibrate",
    "canonical_region_id",
    "corridor_between",
    "default_model",
    "egress_usd_per_gb",
    "estimate_rtt_ms",
    "great_circle_km",
    "internet_egress_usd_per_gb",
    "measured_rtt_ms",
    "region_country",
    "region_location",
    "region_point",
    "region_rtt_ms",
]
