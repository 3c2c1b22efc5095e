"""Network corridors: the unordered pair of continents a path joins.

Long-haul paths follow submarine cable systems, not great circles, and how far they stray depends
on which continents they join: Europe-Asia traffic goes round through Suez and the Indian Ocean
instead of over Siberia, while trans-Pacific cables run close to the great circle. A corridor
names that pair so the RTT model can carry one route factor per corridor.

Invariant: a corridor is the two continent names of ``isthmus.fabric.countries`` in alphabetical
order joined by ``"-"`` (``"Asia-Europe"``, ``"Europe-Europe"``), so it is the same whichever
end is given first. An unknown country has no corridor (``None``).
"""

from __future__ import annotations

from isthmus.fabric.countries import continent_of

__all__ = ["corridor_between"]

_UNKNOWN_CONTINENT = "Unknown"


def corridor_between(country_a: str | None, country_b: str | None) -> str | None:
    """The corridor joining two ISO 3166-1 alpha-2 countries, or None if either is unknown."""
    if country_a is None or country_b is None:
        return None
    continents = sorted((continent_of(country_a.upper()), continent_of(country_b.upper())))
    if _UNKNOWN_CONTINENT in continents:
        return None
    return "-".join(continents)
