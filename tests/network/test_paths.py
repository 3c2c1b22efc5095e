"""Paths over the mini fabric: declared links first, provider backbones, estimates, privacy."""

from __future__ import annotations

import pytest

from isthmus.network.paths import INTRA_SITE_RTT_MS, Network


@pytest.fixture(scope="module")
def network(mini):  # type: ignore[no-untyped-def]
    return Network(mini)


def test_declared_link_wins(network):
    path = network.path("FRA", "onprem-paris")
    assert (path.source, path.rtt_ms, path.private) == ("declared", 9.5, True)
    assert path.transits == {"DE", "FR"}


def test_same_provider_regions_use_measured_backbone(network):
    path = network.path("aws-eu-central-1", "aws-us-east-1")
    assert path.source == "measured" and path.private
    assert 80 < path.rtt_ms < 100  # Frankfurt-Virginia, measured ~90 ms
    assert path.egress_usd_per_gb == pytest.approx(0.02)


def test_undeclared_metro_path_is_estimated_and_public(network):
    path = network.path("FRA", "aws-us-east-1")
    assert path.source == "estimated" and not path.private
    assert 70 < path.rtt_ms < 130
    assert path.transits == {"DE", "US-VA"}


def test_private_path_chains_interconnect_and_backbone(network):
    path = network.path("FRA", "aws-us-east-1", private_only=True)
    assert path.hops == ("FRA", "onprem-paris", "aws-eu-central-1", "aws-us-east-1")
    assert path.private and path.transits == {"DE", "FR", "US-VA"}
    backbone = network.path("aws-eu-central-1", "aws-us-east-1").rtt_ms
    assert path.rtt_ms == pytest.approx(9.5 + 10.2 + backbone)


def test_no_private_path_is_none(network):
    assert network.path("IAD", "onprem-paris", private_only=True) is None


def test_local_path(network):
    path = network.path("onprem-paris", "onprem-paris")
    assert (path.rtt_ms, path.egress_usd_per_gb, path.private) == (INTRA_SITE_RTT_MS, 0.0, True)


def test_rtt_is_symmetric_for_bidirectional_links(network):
    assert network.rtt_ms("onprem-paris", "FRA") == network.rtt_ms("FRA", "onprem-paris")


def test_unknown_place_raises_key_error(network):
    with pytest.raises(KeyError):
        network.path("FRA", "atlantis")
