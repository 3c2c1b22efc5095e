"""ISO 3166-1 alpha-2 country codes: the atoms of every jurisdiction in Isthmus.

A jurisdiction is a country code (``DE``) or a first-level subdivision of one (``US-CA``).
Groups of jurisdictions (``EU``, ``EEA``) are defined in policy files on top of these atoms.
"""

from __future__ import annotations

import re

__all__ = ["CONTINENT_OF", "COUNTRY_CODES", "continent_of", "is_jurisdiction_code"]

COUNTRY_CODES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    """.split()
)

_SUBDIVISION = re.compile(r"^([A-Z]{2})-[A-Z0-9]{1,3}$")


def is_jurisdiction_code(code: str) -> bool:
    """True for ``DE`` or ``US-CA``: a known country, optionally with a subdivision."""
    if code in COUNTRY_CODES:
        return True
    match = _SUBDIVISION.match(code)
    return match is not None and match.group(1) in COUNTRY_CODES


_CONTINENTS: dict[str, str] = {
    "Africa": """
        AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA
        MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW
    """,
    "Asia": """
        AE AF AM AZ BD BH BN BT CN CY GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK
        MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE
    """,
    "Europe": """
        AD AL AT AX BA BE BG BY CH CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI
        LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA
    """,
    "North America": """
        AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX
        NI PA PM PR SV SX TC TT US VC VG VI
    """,
    "South America": "AR BO BR CL CO EC FK GF GY PE PY SR UY VE",
    "Oceania": "AS AU CC CK CX FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
    "Antarctica": "AQ BV GS HM TF",
}
CONTINENT_OF: dict[str, str] = {
    code: continent for continent, codes in _CONTINENTS.items() for code in codes.split()
}


def continent_of(country: str) -> str:
    """The continent of an ISO country code (``Unknown`` for codes outside the table)."""
    return CONTINENT_OF.get(country, "Unknown")
