"""Check digits: valid and invalid examples for every validator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def _nir(body: str) -> str:
    numeric = body.replace("2A", "19").replace("2B", "18")
    return f"{body}{97 - int(numeric) % 97:02d}"


CASES = [
    (valid_luhn, ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"],
     ["4111 1111 1111 1112", "1234567812345678", "4111", "abcd efgh ijkl mnop"]),
    (valid_iban, ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "gb82west12345698765432"],
     ["GB82 WEST 1234 5698 7654 33", "DE8937040044053201300", "XX89370400440532013000"]),
    (valid_ssn_us, ["123-45-6780", "460-89-9847", "853-37-1694"],
     ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000", "078-05-1120"]),
    (valid_steuer_id_de, ["86095742719", "47036892816", "65929970489"],
     ["86095742718", "01234567890", "12345678901"]),
    (valid_nir_fr, [_nir("1841276451089"), _nir("2550819004001"), _nir("25508" + "2A" + "004001")],
     ["1841276451089" + "00", "3841276451089" + "46", "184127645108"]),
    (valid_dni_es, ["12345678Z", "X1234567L", "00000000T"], ["12345678A", "X1234567A", "1234567Z"]),
    (valid_codice_fiscale_it, ["RSSMRA85T10A562S", "rssmra85t10a562s"],
     ["RSSMRA85T10A562T", "RSSMRA85T10A56", "1SSMRA85T10A562S"]),
    (valid_bsn_nl, ["111222333", "123456782"], ["123456789", "000000000", "12345678a"]),
]  # fmt: skip


@pytest.mark.parametrize(("validator", "valid", "invalid"), CASES)
def test_validators(validator, valid: list[str], invalid: list[str]) -> None:  # type: ignore[no-untyped-def]
    for value in valid:
        assert validator(value), value
    for value in invalid:
        assert not validator(value), value


@given(st.text(max_size=40))
def test_validators_are_total(text: str) -> None:
    for validator, _, _ in CASES:
        assert validator(text) in (True, False)


@given(st.integers(min_value=10**15, max_value=10**16 - 1))
def test_luhn_accepts_exactly_one_check_digit(body: int) -> None:
    digits = str(body)
    assert sum(valid_luhn(digits[:-1] + d) for d in "0123456789") == 1
