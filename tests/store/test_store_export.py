"""The YAML writer: readable, self-contained, and read back to an equal spec."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric, load_fabric_text
from isthmus.fabric.schema import FabricSpec, Hosting, Link, Metro, ModelSpec, SiteSpec
from isthmus.store import fabric_to_yaml

TOP_LEVEL = [name for name in FabricSpec.model_fields if name != "include"]


def _top_level_keys(text: str) -> list[str]:
    return [line.split(":", 1)[0] for line in text.splitlines() if line and line[0].isalpha()]


def test_export_is_readable_and_ordered(small_fabric: Fabric) -> None:
    text = fabric_to_yaml(small_fabric.spec)
    keys = _top_level_keys(text)
    assert keys[0] == "version"
    assert keys == [name for name in TOP_LEVEL if name in keys]  # schema order
    assert "include" not in keys
    assert "  NORDICS: ['NO', SE, DK, FI, IS]\n" in text  # Norway is text, lists are inline
    assert "    scale: '1e5'\n" in text  # would read as a number under YAML 1.2
    assert "    renewable: 'true'\n" in text
    assert "description: |\n  A fabric for the store's tests.\n" in text
    assert "sites:\n  - name: oslo-colo\n" in text  # block lists indented under their key
    assert "    params_b: 1000\n" in text  # whole numbers without a fraction
    assert "allocated: 0" not in text and "max_concurrency: 64" not in text  # defaults omitted
    assert max(len(line) for line in text.splitlines()) <= 100


def test_comment_heads_the_document(small_fabric: Fabric) -> None:
    text = fabric_to_yaml(small_fabric.spec, "Catalog 'x'\nsecond line")
    assert text.startswith("# Catalog 'x'\n# second line\nversion: 1\n")
    assert load_fabric_text(text).spec == small_fabric.spec


def test_includes_are_resolved_into_one_document(tmp_path: Path, small_fabric: Fabric) -> None:
    main = tmp_path / "main.yaml"
    main.write_text(
        "name: split\ninclude: [metros.yaml]\n"
        "sites:\n  - {name: s1, kind: edge, provider: p, city: c, country: DE, lat_deg: 1,"
        " lon_deg: 2}\n"
    )
    (tmp_path / "metros.yaml").write_text(
        "metros:\n  - {name: M1, city: c, country: FR, lat_deg: 3, lon_deg: 4}\n"
    )
    fabric = load_fabric(main)
    text = fabric_to_yaml(fabric.spec)
    assert "include" not in text
    assert load_fabric_text(text).spec == fabric.spec.model_copy(update={"include": ()})


# Text the schema accepts in a free-text field: any Unicode except NUL and lone surrogates
# (a YAML file cannot hold those at all).
free_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/+@-]{0,20}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    description=st.none() | free_text,
    city=free_text,
    tags=st.dictionaries(names, free_text, max_size=4),
    lat=st.floats(min_value=-90, max_value=90),
    carbon=st.none() | finite.filter(lambda x: x >= 0),
    rtt=finite.filter(lambda x: x > 0),
    transits=st.lists(st.sampled_from(["DE", "NO", "NA", "IS", "US-CA"]), max_size=3),
    providers=st.lists(names, max_size=5),
)
def test_any_text_and_number_round_trips(
    description: str | None,
    city: str,
    tags: dict[str, str],
    lat: float,
    carbon: float | None,
    rtt: float,
    transits: list[str],
    providers: list[str],
) -> None:
    spec = FabricSpec(
        description=description,
        sites=(
            SiteSpec(
                name="s",
                kind="edge",
                provider="p",
                city=city,
                country="NO",
                lat_deg=lat,
                lon_deg=0,
                carbon_g_per_kwh=carbon,
                tags=tags,
            ),
        ),
        metros=(Metro(name="m", city="c", country="DE", lat_deg=0, lon_deg=0),),
        links=(Link(src="m", dst="s", rtt_ms=rtt, transits=tuple(transits)),),
        models=(
            ModelSpec(
                name="m1", params_b=1, licence="x", hosting=Hosting(providers=tuple(providers))
            ),
        ),
    )
    assert load_fabric_text(fabric_to_yaml(spec)).spec == spec
