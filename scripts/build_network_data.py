"""Derive the compact network tables in ``isthmus/network/data/`` from the public source files.

Usage::

    python scripts/build_network_data.py [SOURCE_DIR]

``SOURCE_DIR`` defaults to ``/work/shared/data/fabric`` and must hold the skyplane RTT, egress
and AWS transfer files and ``cloud_region_coordinates.csv`` (origins in
``isthmus/network/data/SOURCES.md``).
The output is deterministic: rerunning on the same inputs rewrites byte-identical files.

Choices made here, and why:

* Region ids are ``provider:region``. Skyplane names GCP regions by one zone
  (``gcp:us-central1-a``); the zone suffix is dropped so every table speaks of regions.
* RTT keeps only PREMIUM-to-PREMIUM probes (GCP's default network tier; AWS and Azure have one
  tier). Every unordered pair was probed in both directions; the direction with the smaller
  max - min spread is kept. Some probes were hit by transient spikes (e.g. Azure uksouth to GCP
  europe-west2: 3.66 ms one way, 133.8 ms average with a 264 ms max the other way), and the
  steadier probe is the one whose average reflects the path rather than the spike.
* Country codes become upper-case ISO 3166-1 alpha-2 (the source writes ``uk`` for ``GB``).
"""

from __future__ import annotations

import csv
import re
import shutil
import sys
from pathlib import Path

DEFAULT_SOURCE = Path("/work/shared/data/fabric")
TARGET = Path(__file__).resolve().parent.parent / "isthmus" / "network" / "data"

_GCP_ZONE = re.compile(r"^(gcp:[a-z]+-[a-z]+[0-9]+)-[a-z]$")
_TLD_TO_ISO = {"uk": "GB"}


def canonical(region_id: str) -> str:
    match = _GCP_ZONE.match(region_id.strip().lower())
    return match.group(1) if match else region_id.strip().lower()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def build_rtt(source: Path) -> tuple[list[list[str]], set[str]]:
    """One row per unordered region pair: the steadier direction's average RTT."""
    probes: dict[tuple[str, str], tuple[float, float]] = {}
    for row in read_rows(source / "skyplane_cloud_region_rtt.csv"):
        if row["src_tier"] != "PREMIUM" or row["dst_tier"] != "PREMIUM":
            continue
        src, dst = canonical(row["src_region"]), canonical(row["dst_region"])
        if src == dst:
            continue
        spread_ms = float(row["max_rtt"]) - float(row["min_rtt"])
        probes[(src, dst)] = (spread_ms, float(row["avg_rtt"]))
    rows: list[list[str]] = []
    regions: set[str] = set()
    for a, b in sorted({tuple(sorted(pair)) for pair in probes}):
        candidates = [probes[key] for key in ((a, b), (b, a)) if key in probes]
        _, avg_ms = min(candidates)
        rows.append([a, b, f"{avg_ms:.2f}"])
        regions.update((a, b))
    return rows, regions


def build_coordinates(source: Path) -> list[list[str]]:
    rows = []
    for row in read_rows(source / "cloud_region_coordinates.csv"):
        if not row["lat"] or not row["lon"]:
            continue
        tld = row["country_tld"].strip().lower()
        country = _TLD_TO_ISO.get(tld, tld.upper())
        region_id = f"{row['provider'].strip().lower()}:{row['region'].strip().lower()}"
        rows.append([region_id, f"{float(row['lat']):.4f}", f"{float(row['lon']):.4f}", country])
    return sorted(rows)


def build_skyplane_egress(source: Path) -> list[list[str]]:
    rows = [
        [canonical(row["src"]), canonical(row["dest"]), row["cost"].strip()]
        for row in read_rows(source / "skyplane_egress_cost_per_gb.csv")
    ]
    return sorted(rows)


def build_aws_egress(source: Path) -> list[list[str]]:
    def aws_id(name: str) -> str:
        name = name.strip().lower()
        return name if name == "internet" else f"aws:{name}"

    rows = [
        [aws_id(row["src"]), aws_id(row["dst"]), row["cost"].strip()]
        for row in read_rows(source / "aws_transfer_costs.csv")
    ]
    return sorted(rows)


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    rtt_rows, rtt_regions = build_rtt(source)
    coordinates = build_coordinates(source)
    write_rows(TARGET / "rtt_measured.csv", ["region_a", "region_b", "avg_rtt_ms"], rtt_rows)
    write_rows(
        TARGET / "region_coordinates.csv", ["region_id", "lat", "lon", "country_code"], coordinates
    )
    egress_header = ["src", "dst", "usd_per_gb"]
    write_rows(TARGET / "egress_skyplane.csv", egress_header, build_skyplane_egress(source))
    write_rows(TARGET / "egress_aws.csv", egress_header, build_aws_egress(source))
    shutil.copyfile(source / "LICENSE-skyplane", TARGET / "LICENSE-skyplane")

    placed = rtt_regions & {row[0] for row in coordinates}
    print(f"rtt pairs: {len(rtt_rows)}, regions: {len(rtt_regions)}, placed: {len(placed)}")
    print(f"unplaced rtt regions: {sorted(rtt_regions - placed) or 'none'}")
    print(f"regions with coordinates: {len(coordinates)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
