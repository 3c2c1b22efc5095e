"""PNG plots of simulation runs (matplotlib, headless): TTFT CDFs per policy, load over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from isthmus.sim.replay import RequestResult

__all__ = ["plot_load", "plot_ttft_cdf"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ttft_cdf(runs: Mapping[str, Sequence[RequestResult]], path: Path, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for policy, results in runs.items():
        ttft = np.sort(
            [r.ttft_s * 1000.0 for r in results if r.status == "ok" and r.ttft_s is not None]
        )
        if len(ttft):
            ax.plot(ttft, np.arange(1, len(ttft) + 1) / len(ttft), label=policy, linewidth=1.6)
    ax.set_xscale("log")
    ax.set_xlabel("time to first token (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_load(
    results: Sequence[RequestResult],
    path: Path,
    title: str,
    bucket_s: float = 10.0,
    by: Literal["site", "endpoint"] = "site",
) -> Path:
    """Requests started per second at each site (or endpoint), over time (the busiest 8)."""
    plt = _pyplot()
    ok = [r for r in results if r.site is not None]
    if not ok:
        return path
    end = max(r.arrival_s for r in ok)
    edges = np.arange(0.0, end + bucket_s, bucket_s)
    sites: dict[str, list[float]] = {}
    for r in ok:
        where = r.site if by == "site" else r.endpoint
        assert where is not None
        sites.setdefault(where, []).append(r.arrival_s)
    busiest = sorted(sites, key=lambda s: -len(sites[s]))[:8]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for site in busiest:
        counts, _ = np.histogram(sites[site], bins=edges)
        ax.plot(edges[:-1], counts / bucket_s, label=site, linewidth=1.2)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("requests per second")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
