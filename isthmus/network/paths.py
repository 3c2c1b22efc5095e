"""Network paths between places (sites and user metros): RTT, egress price, jurisdictions, privacy.

How a path between ``a`` and ``b`` is found, best evidence first:

1. ``a == b``: a local path (intra-site RTT, no egress, private).
2. A declared link joining them directly.
3. A chain of declared links (shortest RTT; with ``private_only``, private links only). Without
   ``private_only`` it competes with 4–5 below on RTT.
4. A measured RTT between the two cloud regions (``cloud_region_id``) from the packaged matrix.
   Two regions of the same hyperscaler talk over its private backbone, so that path is private;
   the backbone also joins the link graph of step 3, so a private path can enter a provider by a
   declared interconnect and continue on its backbone.
5. An estimate from great-circle distance with the calibrated fibre route model (one route
   factor per continental corridor); public.

Invariants: ``transits`` always holds both ends' jurisdictions plus any that declared links
name, so network-sovereignty checks see every jurisdiction the evidence shows; a path is
``private`` only when every hop is; an undeclared public path never claims privacy. Egress is
priced for data flowing from ``a`` to ``b``: declared link prices first, then the packaged
provider tables, then a per-kind default (``DEFAULT_EGRESS_USD_PER_GB``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Literal

from isthmus.fabric.catalog import Fabric, Place
from isthmus.fabric.schema import Link, SiteSpec
from isthmus.network import tables
from isthmus.network.corridors import corridor_between
from isthmus.network.geo import great_circle_km
from isthmus.network.rtt_model import RttModel, default_model

__all__ = ["DEFAULT_EGRESS_USD_PER_GB", "INTRA_SITE_RTT_MS", "NetPath", "Network"]

PathSource = Literal["local", "declared", "measured", "estimated"]

INTRA_SITE_RTT_MS = 0.5
"""Round trip inside one site (same building or campus)."""

DEFAULT_EGRESS_USD_PER_GB: dict[str, float] = {
    # Hyperscalers' list price for internet egress in their first tier (AWS, Azure, GCP
    # publish 0.08-0.12 USD/GB); used only when no table or declared link prices the path.
    "cloud_region": 0.09,
    # GPU neoclouds (Lambda, Nebius, ...) advertise free or flat-rate egress.
    "neocloud": 0.0,
    # Colocation, on-premises and edge sites pay for ports, not per byte.
    "colo": 0.0,
    "on_prem": 0.0,
    "edge": 0.0,
    "metro": 0.0,
}


@dataclass(frozen=True, slots=True)
class NetPath:
    """One way from ``src`` to ``dst`` and what it costs and crosses."""

    src: str
    dst: str
    hops: tuple[str, ...]
    rtt_ms: float
    egress_usd_per_gb: float
    transits: frozenset[str]
    private: bool
    source: PathSource
    bandwidth_gbps: float | None = None


@dataclass(frozen=True, slots=True)
class _Edge:
    to: str
    link: Link


def _kind(place: Place) -> str:
    return place.kind if isinstance(place, SiteSpec) else "metro"


class Network:
    """Paths over one fabric; results are memoised (the fabric is immutable)."""

    def __init__(self, fabric: Fabric, model: RttModel | None = None) -> None:
        self.fabric = fabric
        self.model = model or default_model()
        self._edges: dict[str, list[_Edge]] = {}
        for link in fabric.spec.links:
            self._edges.setdefault(link.src, []).append(_Edge(link.dst, link))
            if link.bidirectional:
                self._edges.setdefault(link.dst, []).append(_Edge(link.src, link))
        backbone = self._backbone_links(fabric)
        self._backbone_ids = {id(link) for link in backbone}
        for link in backbone:
            self._edges.setdefault(link.src, []).append(_Edge(link.dst, link))
        self._memo: dict[tuple[str, str, bool], NetPath | None] = {}

    @staticmethod
    def _backbone_links(fabric: Fabric) -> list[Link]:
        """Implicit private links between regions of one hyperscaler (its own backbone), so a
        private path can enter a provider by a declared interconnect and ride its backbone."""
        regions: dict[str, list[SiteSpec]] = {}
        for site in fabric.spec.sites:
            if site.kind == "cloud_region" and site.cloud_region_id is not None:
                regions.setdefault(site.provider, []).append(site)
        links = []
        for sites in regions.values():
            for a in sites:
                for b in sites:
                    if a is b:
                        continue
                    assert a.cloud_region_id is not None and b.cloud_region_id is not None
                    rtt = tables.measured_rtt_ms(a.cloud_region_id, b.cloud_region_id)
                    if rtt is None:
                        continue
                    egress = tables.egress_usd_per_gb(a.cloud_region_id, b.cloud_region_id)
                    links.append(
                        Link(
                            src=a.name,
                            dst=b.name,
                            rtt_ms=rtt,
                            egress_usd_per_gb=egress,
                            private=True,
                            bidirectional=False,
                            description="provider backbone (measured)",
                        )
                    )
        return links

    def place(self, name: str) -> Place:
        found = self.fabric.place(name)
        if found is None:
            raise KeyError(f"unknown site or metro {name!r}")
        return found

    def rtt_ms(self, a: str, b: str) -> float:
        path = self.path(a, b)
        assert path is not None  # without private_only a path always exists
        return path.rtt_ms

    def path(self, a: str, b: str, *, private_only: bool = False) -> NetPath | None:
        """The best path from ``a`` to ``b`` (``None`` if ``private_only`` and none exists)."""
        key = (a, b, private_only)
        if key not in self._memo:
            self._memo[key] = self._find(a, b, private_only)
        return self._memo[key]

    def _find(self, a: str, b: str, private_only: bool) -> NetPath | None:
        src, dst = self.place(a), self.place(b)
        ends = frozenset({src.jurisdiction_code, dst.jurisdiction_code})
        if a == b:
            return NetPath(a, b, (a,), INTRA_SITE_RTT_MS, 0.0, ends, True, "local")
        declared = self._declared(a, b, private_only)
        if declared is not None and len(declared.hops) == 2:
            return declared
        direct = self._measured(src, dst, ends)
        if direct is None:
            direct = self._estimated(src, dst, ends)
        if private_only:
            if direct.private and (declared is None or direct.rtt_ms < declared.rtt_ms):
                return direct
            return declared
        if declared is not None and declared.rtt_ms <= direct.rtt_ms:
            return declared
        return direct

    def _declared(self, a: str, b: str, private_only: bool) -> NetPath | None:
        best: dict[str, float] = {a: 0.0}
        previous: dict[str, tuple[str, Link]] = {}
        queue: list[tuple[float, str]] = [(0.0, a)]
        while queue:
            rtt, node = heapq.heappop(queue)
            if node == b:
                break
            if rtt > best.get(node, float("inf")):
                continue
            for edge in self._edges.get(node, ()):
                if private_only and not edge.link.private:
                    continue
                candidate = rtt + edge.link.rtt_ms
                if candidate < best.get(edge.to, float("inf")):
                    best[edge.to] = candidate
                    previous[edge.to] = (node, edge.link)
                    heapq.heappush(queue, (candidate, edge.to))
        if b not in previous:
            return None
        hops = [b]
        links: list[Link] = []
        while hops[-1] != a:
            node, link = previous[hops[-1]]
            links.append(link)
            hops.append(node)
        hops.reverse()
        links.reverse()
        transits = {self.place(h).jurisdiction_code for h in hops}
        egress = 0.0
        for here, link in zip(hops, links, strict=False):
            transits.update(link.transits)
            if link.egress_usd_per_gb is not None:
                egress += link.egress_usd_per_gb
            else:
                egress += self._default_egress(self.place(here))
        bandwidths = [link.bandwidth_gbps for link in links if link.bandwidth_gbps is not None]
        return NetPath(
            a,
            b,
            tuple(hops),
            best[b],
            egress,
            frozenset(transits),
            all(link.private for link in links),
            "measured" if all(id(link) in self._backbone_ids for link in links) else "declared",
            min(bandwidths) if len(bandwidths) == len(links) else None,
        )

    def _measured(self, src: Place, dst: Place, ends: frozenset[str]) -> NetPath | None:
        if not (isinstance(src, SiteSpec) and isinstance(dst, SiteSpec)):
            return None
        if src.cloud_region_id is None or dst.cloud_region_id is None:
            return None
        rtt = tables.measured_rtt_ms(src.cloud_region_id, dst.cloud_region_id)
        if rtt is None:
            return None
        same_backbone = src.provider == dst.provider
        return NetPath(
            src.name,
            dst.name,
            (src.name, dst.name),
            rtt,
            self._egress(src, dst),
            ends,
            same_backbone,
            "measured",
        )

    def _estimated(self, src: Place, dst: Place, ends: frozenset[str]) -> NetPath:
        km = great_circle_km(src.lat_deg, src.lon_deg, dst.lat_deg, dst.lon_deg)
        corridor = corridor_between(src.country, dst.country)
        return NetPath(
            src.name,
            dst.name,
            (src.name, dst.name),
            self.model.estimate_ms(km, corridor),
            self._egress(src, dst),
            ends,
            False,
            "estimated",
        )

    def _egress(self, src: Place, dst: Place) -> float:
        if isinstance(src, SiteSpec) and src.cloud_region_id is not None:
            if isinstance(dst, SiteSpec) and dst.cloud_region_id is not None:
                price = tables.egress_usd_per_gb(src.cloud_region_id, dst.cloud_region_id)
                if price is not None:
                    return price
            internet = tables.internet_egress_usd_per_gb(src.cloud_region_id)
            if internet is not None:
                return internet
        return self._default_egress(src)

    @staticmethod
    def _default_egress(place: Place) -> float:
        return DEFAULT_EGRESS_USD_PER_GB[_kind(place)]
