"""Load a fabric from YAML files: read safely, assemble includes, validate, cross-check.

Invariant: ``load_fabric`` either returns a ``Fabric`` whose every name resolves, or raises
``FabricError`` carrying *all* the problems found (schema and references together), each with
its file, line, column and field. It never returns a partially valid fabric.

A fabric may be split across files: the main file's ``include`` lists other files (relative to
it) whose sections are appended to the main file's (lists concatenate, mappings merge; a key
defined twice is an error). Includes do not nest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.problems import FabricError, Location, Problem, format_path
from isthmus.fabric.references import check_references
from isthmus.fabric.schema import FabricSpec
from isthmus.fabric.schema_errors import problems_from_validation
from isthmus.fabric.yamlsafe import (
    DEFAULT_LIMITS,
    Limits,
    SourceMap,
    load_yaml_file,
    load_yaml_text,
)

__all__ = ["fabric_from_data", "load_fabric", "load_fabric_text"]

_LIST_SECTIONS = {
    name
    for name, info in FabricSpec.model_fields.items()
    if str(info.annotation).startswith("tuple") and name != "include"
}
_MAP_SECTIONS = {"jurisdiction_groups", "aliases"}


def _assemble(
    main: dict[str, Any], source: SourceMap, base: Path, limits: Limits
) -> tuple[dict[str, Any], list[Problem]]:
    problems: list[Problem] = []
    includes = main.get("include") or ()
    if not isinstance(includes, list | tuple):
        return main, problems  # the schema reports the wrong type
    merged = dict(main)
    for rel in includes:
        if not isinstance(rel, str):
            continue
        path = base / rel
        try:
            data, part_source = load_yaml_file(path, limits)
        except FabricError as exc:
            problems.extend(exc.problems)
            continue
        if data is None:
            continue
        if not isinstance(data, dict):
            problems.append(
                Problem(
                    part_source.locate(()), "", "an included file must be a mapping of sections"
                )
            )
            continue
        for key, value in data.items():
            key_loc = part_source.locate((key,), key=True)
            if key in _LIST_SECTIONS and isinstance(value, list):
                existing = merged.get(key) or []
                if not isinstance(existing, list):
                    continue
                offset = len(existing)
                merged[key] = [*existing, *value]
                for p, loc in part_source.values.items():
                    if p and p[0] == key and len(p) > 1 and isinstance(p[1], int):
                        source.values[(key, p[1] + offset, *p[2:])] = loc
                for p, loc in part_source.keys.items():
                    if p and p[0] == key and len(p) > 1 and isinstance(p[1], int):
                        source.keys[(key, p[1] + offset, *p[2:])] = loc
            elif key in _MAP_SECTIONS and isinstance(value, dict):
                existing_map = dict(merged.get(key) or {})
                for name, member in value.items():
                    if name in existing_map:
                        problems.append(
                            Problem(
                                part_source.locate((key, name), key=True),
                                format_path((key, name)),
                                f"{name!r} is already defined in another file",
                            )
                        )
                    existing_map[name] = member
                merged[key] = existing_map
                for p, loc in part_source.values.items():
                    if p and p[0] == key:
                        source.values[p] = loc
                for p, loc in part_source.keys.items():
                    if p and p[0] == key:
                        source.keys[p] = loc
            else:
                valid = ", ".join(sorted(_LIST_SECTIONS | _MAP_SECTIONS))
                problems.append(
                    Problem(
                        key_loc,
                        str(key),
                        f"an included file may only hold the sections {valid} "
                        f"(as lists or mappings); found {key!r}",
                    )
                )
    return merged, problems


def _salvage(data: dict[str, Any], exc: ValidationError) -> tuple[FabricSpec, set[str]] | None:
    """The spec without its invalid items, and the names those items carried.

    Lets the reference checks run even when some items failed the schema, so a user sees
    every problem at once; names of the dropped items count as known, so that an endpoint at a
    site with a typo in its ``kind`` is not also reported as pointing at an unknown site.
    """
    bad: dict[str, set[Any]] = {}
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if loc:
            bad.setdefault(str(loc[0]), set()).add(loc[1] if len(loc) > 1 else None)
    cleaned = dict(data)
    broken: set[str] = set()
    for section, positions in bad.items():
        value = cleaned.get(section)
        if None in positions or not isinstance(value, list | dict):
            cleaned.pop(section, None)
            continue
        if isinstance(value, list):
            for index in positions:
                if isinstance(index, int) and index < len(value):
                    item = value[index]
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        broken.add(item["name"])
            cleaned[section] = [v for i, v in enumerate(value) if i not in positions]
        else:
            broken.update(str(k) for k in positions)
            cleaned[section] = {k: v for k, v in value.items() if k not in positions}
    try:
        return FabricSpec.model_validate(cleaned), broken
    except ValidationError:
        return None


def fabric_from_data(
    data: Any, source: SourceMap, *, base: Path | None = None, limits: Limits = DEFAULT_LIMITS
) -> Fabric:
    """Validate already-parsed data (with its source map) into a ``Fabric``."""
    problems: list[Problem] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FabricError(
            [Problem(source.locate(()), "", "a fabric file must be a mapping of sections")]
        )
    sources = [source.file]
    if data.get("include") and base is not None:
        data, include_problems = _assemble(data, source, base, limits)
        problems.extend(include_problems)
        sources.extend(str(base / str(rel)) for rel in data.get("include") or ())
    try:
        spec = FabricSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from_validation(FabricSpec, exc, source))
        salvaged = _salvage(data, exc)
        if salvaged is not None:
            spec, broken = salvaged
            problems.extend(check_references(spec, source, assume_known=broken))
        raise FabricError(problems) from None
    problems.extend(check_references(spec, source))
    if problems:
        raise FabricError(problems)
    if spec.include:
        # the includes are assembled: the spec now holds everything (the files stay in sources)
        spec = spec.model_copy(update={"include": ()})
    return Fabric(spec, tuple(sources), source)


def load_fabric(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Fabric:
    """Load and validate a fabric file (and its includes)."""
    data, source = load_yaml_file(path, limits)
    return fabric_from_data(data, source, base=Path(path).parent, limits=limits)


def load_fabric_text(text: str, file: str = "<text>", limits: Limits = DEFAULT_LIMITS) -> Fabric:
    """Load and validate a fabric from a string (includes are not followed)."""
    data, source = load_yaml_text(text, file, limits)
    if isinstance(data, dict) and data.get("include"):
        raise FabricError(
            [Problem(Location(file, 1, 1), "include", "include needs a file, not a string")]
        )
    return fabric_from_data(data, source, limits=limits)
