"""Check digits and format rules that turn "looks like a number" into "is a valid identifier".

Each validator takes the candidate as found (separators allowed where the format allows them)
and returns whether it is valid. They are pure and total: any string, never an exception.
Validation is what keeps PII detection precise: a 16-digit order number fails Luhn, a random
9-digit number fails the BSN 11-test nine times in ten.
"""

from __future__ import annotations

import re

__all__ = [
    "IBAN_LENGTHS",
    "valid_bsn_nl",
    "valid_codice_fiscale_it",
    "valid_dni_es",
    "valid_iban",
    "valid_luhn",
    "valid_nir_fr",
    "valid_ssn_us",
    "valid_steuer_id_de",
]

_SEPARATORS = re.compile(r"[\s.\-]")

IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
"""IBAN length by country (ISO 13616 registry)."""


def _digits(text: str) -> str:
    return _SEPARATORS.sub("", text)


def valid_luhn(number: str) -> bool:
    """A payment card number (13–19 digits, spaces or dashes allowed) passing the Luhn check."""
    digits = _digits(number)
    if not digits.isdigit() or not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if i % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def valid_iban(iban: str) -> bool:
    """An IBAN of its country's length whose mod-97 check (ISO 7064) gives 1."""
    compact = _digits(iban).upper()
    if len(compact) < 15 or not compact.isalnum() or not compact.isascii():
        return False
    country = compact[:2]
    if IBAN_LENGTHS.get(country) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return int(numeric) % 97 == 1


def valid_ssn_us(ssn: str) -> bool:
    """A US SSN ``AAA-GG-SSSS`` as the SSA issues them: area not 000, 666 or 9xx, group not 00,
    serial not 0000, and not one of the numbers published in advertising (078-05-1120, …)."""
    digits = _digits(ssn)
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in {"078051120", "219099999", "123456789"}


def valid_steuer_id_de(number: str) -> bool:
    """A German tax id (Steuer-IdNr): 11 digits, no leading 0, in the first ten one digit
    repeated (twice or three times) and the check digit by ISO 7064 MOD 11,10."""
    digits = _digits(number)
    if len(digits) != 11 or not digits.isdigit() or digits[0] == "0":
        return False
    counts = [digits[:10].count(d) for d in set(digits[:10])]
    if sorted(counts, reverse=True)[0] not in (2, 3) or sum(1 for c in counts if c > 1) != 1:
        return False
    product = 10
    for char in digits[:10]:
        total = (int(char) + product) % 10 or 10
        product = (total * 2) % 11
    check = 11 - product
    return (0 if check == 10 else check) == int(digits[10])


def valid_nir_fr(number: str) -> bool:
    """A French social security number (NIR): 13 characters (Corsica's 2A/2B allowed) and a
    two-digit key equal to 97 minus the number modulo 97."""
    compact = _digits(number).upper()
    if len(compact) != 15 or compact[0] not in "1278":
        return False
    body, key = compact[:13], compact[13:]
    if body[5:7] == "2A":
        body = body[:5] + "19" + body[7:]
    elif body[5:7] == "2B":
        body = body[:5] + "18" + body[7:]
    if not body.isdigit() or not key.isdigit():
        return False
    return 97 - int(body) % 97 == int(key)


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def valid_dni_es(number: str) -> bool:
    """A Spanish DNI (8 digits and a check letter) or NIE (X/Y/Z, 7 digits, check letter)."""
    compact = _digits(number).upper()
    if len(compact) != 9:
        return False
    head, letter = compact[:8], compact[8]
    if head[0] in "XYZ":
        head = str("XYZ".index(head[0])) + head[1:]
    if not head.isdigit():
        return False
    return _DNI_LETTERS[int(head) % 23] == letter


_CF_ODD = {
    **dict(zip("0123456789", (1, 0, 5, 7, 9, 13, 15, 17, 19, 21), strict=True)),
    **dict(
        zip(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22,
             25, 24, 23),
            strict=True,
        )
    ),
}  # fmt: skip
_CF_SHAPE = re.compile(
    r"^[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]$"
)


def _cf_even(char: str) -> int:
    return int(char) if char.isdigit() else ord(char) - 65


def valid_codice_fiscale_it(code: str) -> bool:
    """An Italian codice fiscale (16 characters, omocodia letters allowed) whose last letter is
    the check character over the first fifteen."""
    compact = _digits(code).upper()
    if not _CF_SHAPE.match(compact):
        return False
    total = 0
    for i, char in enumerate(compact[:15]):
        total += _CF_ODD[char] if i % 2 == 0 else _cf_even(char)
    return chr(65 + total % 26) == compact[15]


def valid_bsn_nl(number: str) -> bool:
    """A Dutch citizen service number (BSN): 9 digits passing the 11-test (last weight -1)."""
    digits = _digits(number)
    if len(digits) == 8:
        digits = "0" + digits
    if len(digits) != 9 or not digits.isdigit() or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    total -= int(digits[8])
    return total % 11 == 0
