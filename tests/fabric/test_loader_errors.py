"""Broken fabric files: each is refused with file, line, column and the field at fault."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from isthmus.fabric.loader import load_fabric
from isthmus.fabric.problems import FabricError, Problem
from isthmus.fabric.yamlsafe import Limits

MINI = (Path(__file__).parents[1] / "fixtures" / "mini.yaml").read_text()


def position(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based line and column of the ``occurrence``-th ``needle`` in ``text``."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


@dataclass
class Variant:
    name: str
    old: str
    new: str
    field: str
    at: str  # the text the reported column must point at (searched in the broken file)
    message: str  # a fragment the message must contain
    occurrence: int = 1


VARIANTS = [
    Variant(
        "unknown field",
        "    city: Paris\n",
        "    city: Paris\n    colour: blue\n",
        "sites[1].colour",
        "colour",
        "unknown field 'colour'",
    ),
    Variant(
        "typo in enum",
        "kind: on_prem",
        "kind: onprem",
        "sites[1].kind",
        "onprem\n",
        "expected one of 'cloud_region'",
    ),
    Variant(
        "wrong type",
        "count: 8,",
        "count: many,",
        "sites[1].accelerators[0].count",
        "many",
        "expected an integer",
    ),
    Variant(
        "missing field",
        "    city: Paris\n",
        "",
        "sites[1].city",
        "name: onprem-paris",
        "required field 'city' is missing",
    ),
    Variant(
        "bad country",
        "country: FR",
        "country: FRA",
        "sites[1].country",
        "FRA",
        "not an ISO 3166-1 alpha-2",
    ),
    Variant(
        "latitude out of range",
        "lat_deg: 48.86",
        "lat_deg: 148.86",
        "sites[1].lat_deg",
        "148.86",
        "less than or equal to 90",
    ),
    Variant(
        "allocated above count",
        "allocated: 4,",
        "allocated: 40,",
        "sites[0].accelerators[0]",
        "{type: H100, count: 16",
        "exceeds count",
    ),
    Variant(
        "unknown model in endpoint",
        "model: llama-3.1-8b, site: onprem-paris",
        "model: llama-3.1-80b, site: onprem-paris",
        "endpoints[1].model",
        "llama-3.1-80b",
        "did you mean 'llama-3.1-8b'",
    ),
    Variant(
        "duplicate site name",
        "  - name: aws-us-east-1\n",
        "  - name: onprem-paris\n",
        "sites[2].name",
        "onprem-paris",
        "duplicate name 'onprem-paris'",
        occurrence=2,
    ),
    Variant(
        "duplicate key",
        "    city: Paris\n",
        "    city: Paris\n    city: Lyon\n",
        "sites[1].city",
        "city: Lyon",
        "duplicate key 'city'",
    ),
    Variant(
        "unknown group in policy",
        "process_in: [EEA]",
        "process_in: [EEEA]",
        "policies[1].process_in[0]",
        "EEEA",
        "did you mean 'EEA'",
    ),
    Variant(
        "endpoint url",
        'url: "http://127.0.0.1:18002/v1"',
        "url: ftp://nope",
        "endpoints[1].url",
        "ftp://nope",
        "expected text matching",
    ),
    Variant(
        "link to unknown place",
        "src: FRA, dst: onprem-paris",
        "src: FRX, dst: onprem-paris",
        "links[0].src",
        "FRX",
        "unknown site or metro 'FRX'",
    ),
    Variant(
        "group cycle",
        "EU: [DE, FR, NL, IE]",
        "EU: [DE, FR, NL, IE, EEA]",
        "jurisdiction_groups.EU",
        "[DE, FR",
        "cycle",
    ),
    Variant(
        "tenant unknown class",
        "default_data_class: pii",
        "default_data_class: pi",
        "tenants[0].default_data_class",
        "pi\n",
        "unknown data class 'pi'",
    ),
    Variant(
        "endpoint accelerator the site lacks",
        "url: \"http://127.0.0.1:18002/v1\", accelerator: H100}",
        "url: \"http://127.0.0.1:18002/v1\", accelerator: A100}",
        "endpoints[1].accelerator",
        "A100}",
        "unknown accelerator 'A100' at site onprem-paris; did you mean 'H100'? Known: H100.",
    ),
    Variant(
        "endpoint accelerator at a site that declares none",
        "    accelerators:\n      - {type: H100, count: 8, on_demand_usd_per_device_hour: 2.5}\n",
        "",
        "endpoints[1].accelerator",
        "H100}",
        "unknown accelerator 'H100' at site onprem-paris, which declares none",
        occurrence=2,
    ),
    Variant(
        "python tag",
        "name: mini",
        "name: !!python/object/apply:os.system [ls]",
        "name",
        "!!python",
        "not allowed",
    ),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_variant_is_located(tmp_path: Path, variant: Variant) -> None:
    assert variant.old in MINI, variant.name
    text = MINI.replace(variant.old, variant.new, 1)
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(FabricError) as caught:
        load_fabric(path)
    problems = caught.value.problems
    matching = [p for p in problems if p.field == variant.field]
    assert matching, f"no problem for {variant.field}: {[str(p) for p in problems]}"
    problem: Problem = matching[0]
    line, column = position(text, variant.at, variant.occurrence)
    assert problem.location.file == str(path)
    assert (problem.location.line, problem.location.column) == (line, column), str(problem)
    assert variant.message in problem.message, str(problem)
    assert str(problem).startswith(f"{path}:{line}:{column}: {variant.field}: ")


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        MINI.replace("kind: on_prem", "kind: onprem")
        .replace("country: FR", "country: FRA")
        .replace("model: llama-3.1-8b, site: onprem-paris", "model: nope, site: onprem-paris")
        .replace("process_in: [EEA]", "process_in: [EEEA]")
    )
    path = tmp_path / "many.yaml"
    path.write_text(text)
    with pytest.raises(FabricError) as caught:
        load_fabric(path)
    fields = {p.field for p in caught.value.problems}
    assert {
        "sites[1].kind",
        "sites[1].country",
        "endpoints[1].model",
        "policies[1].process_in[0]",
    } <= fields
    # the broken site's name still counts as known: no spurious "unknown site" errors
    assert not any("unknown site 'onprem-paris'" in p.message for p in caught.value.problems)


def test_invalid_utf8_is_refused_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINI.replace("city: Paris", "city: Par\xeds").encode("latin-1"))
    with pytest.raises(FabricError) as caught:
        load_fabric(path)
    (problem,) = caught.value.problems
    line, column = position(MINI, "Paris")
    assert (problem.location.line, problem.location.column) == (line, column + 3)
    assert "invalid UTF-8" in problem.message


def test_malformed_yaml_is_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINI.replace("EU: [DE, FR, NL, IE]", "EU: [DE, FR, NL, IE"))
    with pytest.raises(FabricError) as caught:
        load_fabric(path)
    (problem,) = caught.value.problems
    assert problem.location.line >= 4
    assert problem.message.startswith("invalid YAML")


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FabricError) as caught:
        load_fabric(path)
    assert "expands to more than" in caught.value.problems[0].message


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(FabricError) as caught:
        load_fabric(path)
    assert "nesting deeper than 64" in caught.value.problems[0].message


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * 2048 + "\n")
    with pytest.raises(FabricError) as caught:
        load_fabric(path, Limits(max_bytes=1024))
    assert "larger than 1,024 bytes" in caught.value.problems[0].message


def test_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(FabricError) as caught:
        load_fabric(tmp_path / "absent.yaml")
    assert "cannot read file" in caught.value.problems[0].message


def test_norway_stays_norway(tmp_path: Path) -> None:
    # YAML 1.1 would read NO as false; the fabric reader uses the YAML 1.2 core schema.
    path = tmp_path / "no.yaml"
    path.write_text(MINI.replace("EEA: [EU, NO, IS, LI]", "EEA: [EU, NO, IS, LI]"))
    fabric = load_fabric(path)
    assert "NO" in fabric.jurisdictions(["EEA"])


def test_infinite_numbers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "inf.yaml"
    text = MINI.replace("rtt_ms: 9.5", "rtt_ms: .inf")
    path.write_text(text)
    with pytest.raises(FabricError) as caught:
        load_fabric(path)
    (problem,) = caught.value.problems
    assert problem.field == "links[0].rtt_ms"
    assert "finite number" in problem.message
