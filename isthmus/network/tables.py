"""Measured network facts looked up by region id: RTT, location, country and egress price.

Region ids are ``provider:region`` (``aws:eu-north-1``, ``azure:eastus``, ``gcp:us-central1``).
:func:`canonical_region_id` lower-cases an id and drops a GCP zone suffix
(``gcp:us-central1-a`` -> ``gcp:us-central1``), so zone and region ids find the same rows.

Invariants: nothing is read at import; each table is parsed from the package data on its first
lookup and cached for the life of the process. Lookups never raise for an unknown id or pair;
they return None, meaning "not measured", never "free" or "zero latency".

Sources (``data/SOURCES.md``): skyplane's measured RTT matrix and egress prices (Apache-2.0),
AWS transfer prices as published in skyplane, region coordinates from dgl/cloud-regions
(ODbL-1.0, derived from OpenStreetMap).
"""

from __future__ import annotations

import csv
import functools
import io
import re
from typing import NamedTuple

from isthmus.network.data import read_text
from isthmus.network.geo import GeoPoint

__all__ = [
    "INTERNET",
    "MeasuredRtt",
    "canonical_region_id",
    "egress_usd_per_gb",
    "internet_egress_usd_per_gb",
    "measured_rtt_ms",
    "measured_rtt_pairs",
    "region_country",
    "region_location",
    "region_point",
]

INTERNET = "internet"
"""The egress destination that means "out to the public internet"."""

_GCP_ZONE = re.compile(r"^(gcp:[a-z]+-[a-z]+[0-9]+)-[a-z]$")


class MeasuredRtt(NamedTuple):
    """One measured region pair (stored once per unordered pair, see ``data/SOURCES.md``)."""

    region_a: str
    region_b: str
    avg_rtt_ms: float


class _Place(NamedTuple):
    lat: float
    lon: float
    country_code: str


def canonical_region_id(region_id: str) -> str:
    """``region_id`` trimmed and lower-cased, with a GCP zone suffix removed."""
    normalised = region_id.strip().lower()
    match = _GCP_ZONE.match(normalised)
    return match.group(1) if match else normalised


def measured_rtt_ms(region_a: str, region_b: str) -> float | None:
    """Measured average RTT between two regions, whichever direction was stored.

    None if the pair was not measured, including ``region_a == region_b``.
    """
    a, b = canonical_region_id(region_a), canonical_region_id(region_b)
    table = _rtt_table()
    measured = table.get((a, b))
    return measured if measured is not None else table.get((b, a))


def measured_rtt_pairs() -> tuple[MeasuredRtt, ...]:
    """Every measured pair, in file order (sorted by region ids)."""
    return tuple(MeasuredRtt(a, b, rtt_ms) for (a, b), rtt_ms in _rtt_table().items())


def region_location(region_id: str) -> tuple[float, float] | None:
    """(latitude, longitude) in degrees of the region's city, or None if not known."""
    place = _places().get(canonical_region_id(region_id))
    return None if place is None else (place.lat, place.lon)


def region_country(region_id: str) -> str | None:
    """ISO 3166-1 alpha-2 code of the country the region is in, or None if not known."""
    place = _places().get(canonical_region_id(region_id))
    return None if place is None else place.country_code


def region_point(region_id: str) -> GeoPoint | None:
    """The region as a :class:`GeoPoint` (location and country), or None if not known."""
    place = _places().get(canonical_region_id(region_id))
    return None if place is None else GeoPoint(place.lat, place.lon, place.country_code)


def egress_usd_per_gb(src: str, dst: str) -> float | None:
    """Price in USD per GB to send from region ``src`` to region ``dst`` (or ``"internet"``).

    The skyplane inter-cloud table is consulted first, then AWS's published transfer prices
    (the two agree on all 598 pairs they share). None if neither lists the pair.
    """
    key = (canonical_region_id(src), canonical_region_id(dst))
    price = _skyplane_egress().get(key)
    return price if price is not None else _aws_egress().get(key)


def internet_egress_usd_per_gb(src: str) -> float | None:
    """Price in USD per GB to send from region ``src`` to the internet, or None if not listed."""
    return egress_usd_per_gb(src, INTERNET)


def _csv_rows(name: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a packaged CSV with their line numbers; the header must name ``columns``."""
    reader = csv.DictReader(io.StringIO(read_text(name)))
    missing = [column for column in columns if column not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{name}: header lacks column(s) {', '.join(missing)}")
    return [(line, row) for line, row in enumerate(reader, start=2)]


def _number(name: str, line: int, row: dict[str, str], column: str) -> float:
    try:
        return float(row[column])
    except (TypeError, ValueError):
        raise ValueError(f"{name}, line {line}: {column} is not a number") from None


@functools.cache
def _rtt_table() -> dict[tuple[str, str], float]:
    name = "rtt_measured.csv"
    return {
        (row["region_a"], row["region_b"]): _number(name, line, row, "avg_rtt_ms")
        for line, row in _csv_rows(name, ("region_a", "region_b", "avg_rtt_ms"))
    }


@functools.cache
def _places() -> dict[str, _Place]:
    name = "region_coordinates.csv"
    return {
        row["region_id"]: _Place(
            _number(name, line, row, "lat"), _number(name, line, row, "lon"), row["country_code"]
        )
        for line, row in _csv_rows(name, ("region_id", "lat", "lon", "country_code"))
    }


def _egress_table(name: str) -> dict[tuple[str, str], float]:
    return {
        (row["src"], row["dst"]): _number(name, line, row, "usd_per_gb")
        for line, row in _csv_rows(name, ("src", "dst", "usd_per_gb"))
    }


@functools.cache
def _skyplane_egress() -> dict[tuple[str, str], float]:
    return _egress_table("egress_skyplane.csv")


@functools.cache
def _aws_egress() -> dict[tuple[str, str], float]:
    return _egress_table("egress_aws.csv")
