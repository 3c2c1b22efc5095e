from __future__ import annotations

import csv
from pathlib import Path

import pytest

from isthmus.network.tables import (
    canonical_region_id,
    egress_usd_per_gb,
    internet_egress_usd_per_gb,
    measured_rtt_ms,
    measured_rtt_pairs,
    region_country,
    region_location,
)

DATA = Path(__file__).resolve().parents[2] / "isthmus" / "network" / "data"


def rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_gcp_zone_ids_name_their_region() -> None:
    assert canonical_region_id("gcp:us-central1-a") == "gcp:us-central1"
    assert canonical_region_id(" GCP:europe-west1-b ") == "gcp:europe-west1"
    assert canonical_region_id("aws:eu-north-1") == "aws:eu-north-1"


def test_measured_rtt_is_symmetric() -> None:
    for pair in measured_rtt_pairs()[::97]:
        assert measured_rtt_ms(pair.region_a, pair.region_b) == pair.avg_rtt_ms
        assert measured_rtt_ms(pair.region_b, pair.region_a) == pair.avg_rtt_ms


def test_measured_rtt_matches_the_packaged_file() -> None:
    first = rows("rtt_measured.csv")[0]
    assert measured_rtt_ms(first["region_a"], first["region_b"]) == float(first["avg_rtt_ms"])
    assert measured_rtt_ms("gcp:us-central1-a", "aws:us-east-1") == measured_rtt_ms(
        "aws:us-east-1", "gcp:us-central1"
    )


def test_the_full_matrix_is_packaged() -> None:
    pairs = measured_rtt_pairs()
    regions = {region for pair in pairs for region in (pair.region_a, pair.region_b)}
    assert len(regions) == 69
    assert len(pairs) == 69 * 68 // 2
    assert all(region_location(region) is not None for region in regions)


def test_unknown_ids_give_none() -> None:
    assert measured_rtt_ms("aws:eu-north-1", "mars:olympus-1") is None
    assert measured_rtt_ms("aws:eu-north-1", "aws:eu-north-1") is None
    assert region_location("mars:olympus-1") is None
    assert region_country("mars:olympus-1") is None
    assert egress_usd_per_gb("mars:olympus-1", "aws:eu-north-1") is None
    assert internet_egress_usd_per_gb("azure:eastus") is None


def test_region_location_and_country() -> None:
    location = region_location("gcp:europe-west2-a")
    assert location == pytest.approx((51.5073, -0.1276))
    assert region_country("gcp:europe-west2") == "GB"
    assert region_country("azure:eastus") == "US"


def test_skyplane_egress_matches_source_rows() -> None:
    for row in rows("egress_skyplane.csv")[::211]:
        assert egress_usd_per_gb(row["src"], row["dst"]) == float(row["usd_per_gb"])


def test_aws_egress_matches_source_rows_including_internet() -> None:
    for row in rows("egress_aws.csv")[::37]:
        assert egress_usd_per_gb(row["src"], row["dst"]) == float(row["usd_per_gb"])
    assert internet_egress_usd_per_gb("aws:us-east-1") == 0.09
    assert internet_egress_usd_per_gb("aws:sa-east-1") == 0.15


def test_egress_is_directional_and_accepts_zone_ids() -> None:
    assert egress_usd_per_gb("aws:us-east-2", "azure:eastus") == 0.09
    assert egress_usd_per_gb("gcp:asia-east1-a", "aws:us-east-1") == egress_usd_per_gb(
        "gcp:asia-east1", "aws:us-east-1"
    )
