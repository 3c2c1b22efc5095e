"""Packaged network tables (see ``SOURCES.md`` beside this file for origin and licences).

Invariant: files here are read only through :func:`read_text`, only when first needed, and never
written at run time; ``scripts/build_network_data.py`` and ``scripts/calibrate_rtt.py`` rebuild
them from the public sources.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["read_text"]


def read_text(name: str) -> str:
    """The UTF-8 text of the packaged data file ``name``."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
