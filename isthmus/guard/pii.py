"""Personal data with validation: cards, IBANs, SSNs, e-mail, phones, IPs, EU national ids.

Invariants: a number is reported as an identifier only if it passes that identifier's check
(Luhn, mod-97, SSA rules, the national check digit) — or, for the weakest formats (phone
numbers without a country code, Dutch BSN, German tax id), if a keyword nearby says what it
is. Overlapping candidates are resolved by specificity (card > IBAN > SSN > national id >
IP > phone), so one digit string yields at most one finding.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from isthmus.guard.findings import Finding, InspectionContext
from isthmus.guard.validators import (
    valid_bsn_nl,
    valid_codice_fiscale_it,
    valid_dni_es,
    valid_iban,
    valid_luhn,
    valid_nir_fr,
    valid_ssn_us,
    valid_steuer_id_de,
)

__all__ = ["PiiInspector"]


@dataclass(frozen=True, slots=True)
class _Pattern:
    entity: str
    regex: re.Pattern[str]
    validate: Callable[[str], bool] | None
    keywords: re.Pattern[str] | None = None
    score: float = 0.95
    gate: str = "digits"
    """Which cheap pre-check must pass before the pattern runs (see ``_GATES``)."""


def _keywords(*words: str) -> re.Pattern[str]:
    return re.compile(r"(?i)\b(?:" + "|".join(words) + r")\b")


_PHONE_WORDS = _keywords(
    "phone", "tel", "telephone", "mobile", "cell", "fax", "desk", "call", "calling", "contact",
    "reach", "registered", "messages? to", "answering at", "whatsapp", "sms", "text me", "dial",
    "telefon", "téléphone", "telefono", "handy", "hotline",
)  # fmt: skip

# Patterns start with a character class and check what precedes it with a lookbehind *after*
# that first character: CPython's regex engine can then skip ahead to candidate characters
# instead of trying the lookbehind at every position (3x faster on prose).
_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        "credit_card", re.compile(r"\d(?<![\w.-]\d)(?:[ -]?\d){12,18}(?![\w-]|\.\d)"), valid_luhn
    ),
    _Pattern(
        "iban",
        re.compile(
            r"(?i)[A-Z](?<!\w[A-Z])[A-Z]\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?!\w)"
        ),
        valid_iban,
    ),
    _Pattern("us_ssn", re.compile(r"\d(?<![\w-]\d)\d{2}-\d{2}-\d{4}(?![\w-])"), valid_ssn_us),
    _Pattern(
        "us_ssn",
        re.compile(r"\d(?<![\w-]\d)\d{8}(?![\w-])"),
        valid_ssn_us,
        _keywords("ssn", "social security", "social security number", "ss#"),
    ),
    _Pattern(
        "fr_nir",
        re.compile(
            r"(?i)[1278](?<!\w[1278]) ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?!\w)"
        ),
        valid_nir_fr,
    ),
    _Pattern(
        "es_dni",
        re.compile(r"(?i)(?:\d(?<![\w-]\d)\d{7}|[XYZ](?<![\w-][XYZ])-?\d{7})-?[A-Z](?![\w-])"),
        valid_dni_es,
    ),
    _Pattern(
        "it_codice_fiscale",
        re.compile(
            r"(?i)[A-Z](?<!\w[A-Z])[A-Z]{5}[0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z](?!\w)"
        ),
        valid_codice_fiscale_it,
        gate="cf",
    ),
    _Pattern(
        "de_steuer_id",
        re.compile(r"\d(?<![\w-]\d)\d ?\d{3} ?\d{3} ?\d{3}(?![\w-])"),
        valid_steuer_id_de,
        _keywords(
            "steuer-?id",
            "steuer-?idnr",
            "steueridentifikationsnummer",
            "tax id",
            "idnr",
            "identifikationsnummer",
        ),
    ),
    _Pattern(
        "nl_bsn",
        re.compile(r"\d(?<![\w.-]\d)(?:\d{3}\.?\d{2}\.?\d{3}|\d{8})(?![\w-])"),
        valid_bsn_nl,
        _keywords("bsn", "burgerservicenummer", "sofinummer", "sofi"),
    ),
    _Pattern(
        "email",
        re.compile(
            r"(?i)[a-z0-9._%+-](?<![\w.+-][a-z0-9._%+-])[a-z0-9._%+-]{0,63}@(?:[a-z0-9-]{1,63}\.)+[a-z]{2,24}(?!\w)"
        ),
        None,
        gate="at",
    ),
    _Pattern(
        "ip_address",
        re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?!\w|\.\d)"),
        lambda text: _valid_ip(text),
        gate="ip4",
    ),
    _Pattern(
        "ip_address",
        re.compile(
            r"(?i)(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}(?::|[0-9a-f]{1,4})(?:[0-9a-f:]*)(?![\w:])"
        ),
        lambda text: ":" in text and _valid_ip(text),
        gate="ip6",
    ),
)
_GATES: dict[str, re.Pattern[str]] = {
    "digits": re.compile(r"\d(?:[ .()/-]{0,2}\d){6}"),  # at least seven digits close together
    "cf": re.compile(r"[A-Za-z]{6}\d\d[A-Za-z]"),
    "at": re.compile(r"@"),
    "ip4": re.compile(r"\d\.\d"),
    "ip6": re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f:]"),
}
_ANY_GATE = re.compile(r"[\d@:]")
"""A character every gate's match holds: without one, no gate opens (most prose)."""

# Phones: a strong shape is reported alone; a weak one needs a keyword in the 40 characters
# before it (or "office"/"fax"/"mobile" right after).
_PHONE = re.compile(
    r"(?<![\w+.-])(?:\+|00)?\d{0,3}[ .-]?(?:\(\d{1,4}\)[ .-]?|\(0\)[ .-]?)?\d{1,4}(?:[ .-]?\d{1,5}){1,5}"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w]|[.-]\d)"
)
_PHONE_STRONG = re.compile(
    r"^(?:\+\d|00\d)|^\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}(?:\s?(?:x|ext\.?)\s?\d+)?$"
)
_PHONE_AFTER = re.compile(r"^\s?-?(?:office|fax|mobile|cell|home|work)\b", re.IGNORECASE)
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$")


def _valid_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return not (isinstance(address, ipaddress.IPv4Address) and text.startswith("0"))


def _near(pattern: re.Pattern[str], text: str, start: int, end: int, before: int = 40) -> bool:
    return bool(pattern.search(text[max(0, start - before) : start])) or bool(
        _PHONE_AFTER.match(text[end : end + 12])
    )


def _phones(text: str) -> list[Finding]:
    out: list[Finding] = []
    for match in _PHONE.finditer(text):
        value = match.group().strip()
        digits = sum(c.isdigit() for c in value.split("x")[0])
        if not 7 <= digits <= 15 or _DATE_LIKE.match(value):
            continue
        start, end = match.start(), match.start() + len(match.group().rstrip())
        strong = bool(_PHONE_STRONG.search(value))
        if strong or _near(_PHONE_WORDS, text, start, end):
            out.append(Finding("pii:phone", "pii.phone", start, end, 0.9 if strong else 0.75))
    return out


class PiiInspector:
    """Validated personal data (see the module invariants)."""

    name = "pii"

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        if not _ANY_GATE.search(text):
            return []
        candidates: list[Finding] = []
        open_gates = {name for name, gate in _GATES.items() if gate.search(text)}
        for pattern in _PATTERNS:
            if pattern.gate not in open_gates:
                continue
            for match in pattern.regex.finditer(text):
                value = match.group()
                if pattern.validate is not None and not pattern.validate(value):
                    continue
                if pattern.keywords is not None and not _near(
                    pattern.keywords, text, match.start(), match.end(), 60
                ):
                    continue
                candidates.append(
                    Finding(
                        f"pii:{pattern.entity}",
                        f"pii.{pattern.entity}",
                        match.start(),
                        match.end(),
                        pattern.score,
                    )
                )
        if "digits" in open_gates:
            candidates.extend(_phones(text))
        return _resolve_overlaps(candidates)


def _resolve_overlaps(candidates: list[Finding]) -> list[Finding]:
    """Keep, among overlapping candidates, the one listed first (most specific)."""
    kept: list[Finding] = []
    for finding in candidates:
        if any(finding.start < k.end and k.start < finding.end for k in kept):
            continue
        kept.append(finding)
    return sorted(kept, key=lambda f: f.start)
