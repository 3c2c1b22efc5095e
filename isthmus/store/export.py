"""Write a fabric as one self-contained YAML document that people can read and edit.

Invariants:

- ``load_fabric_text(fabric_to_yaml(spec))`` gives a spec equal to ``spec`` with its
  ``include`` dropped: the document holds every section itself and never includes files.
- Sections come in the schema's order, items in the catalog's order, and fields equal to their
  defaults are left out; ``version`` is always written first, so the format is explicit.
- Text is written so that both YAML 1.1 and the YAML 1.2 core schema read it back as text:
  ``NO``, ``yes``, ``0o17``, ``1e5`` and ``.inf`` are quoted, never left to a resolver.
- Whole numbers are written without a fraction (``params_b: 8``, not ``8.0``); the schema reads
  them back as the same floats.
- Text holding NEL, LS or PS (line breaks to YAML 1.1) is double-quoted, where they are escaped.
- Lists of short plain values are written inline (``process_in: [EEA, CH]``), folded near 100
  characters; everything else in block style, lists indented under their key.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from isthmus.fabric.schema import FabricSpec

__all__ = ["fabric_to_yaml"]

WIDTH = 100
_INLINE_MAX_CHARS = 40
_EXACT_INT = 2**53  # every whole float below this is exactly an int, and reads back as itself
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"

# Plain scalars that the YAML 1.2 core schema reads as something other than text. PyYAML's
# own (YAML 1.1) resolver already makes the dumper quote yes/no/on/off, 012 and the like.
_NOT_TEXT_IN_YAML_1_2 = re.compile(
    r"~|null|Null|NULL|true|True|TRUE|false|False|FALSE"
    r"|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|<<"
)
_UNICODE_BREAKS = "\x85\u2028\u2029"  # NEL, LS, PS: line breaks to YAML 1.1 readers


class _Dumper(yaml.SafeDumper):
    """SafeDumper that indents lists under their key (``key:\\n  - item``)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style: str | None = None
    if any(ch in value for ch in _UNICODE_BREAKS):
        style = '"'  # only double quotes escape them; elsewhere a reader folds them to spaces
    elif _NOT_TEXT_IN_YAML_1_2.fullmatch(value):
        style = "'"
    elif "\n" in value:
        style = "|"  # the emitter falls back to quotes where a literal block cannot be exact
    return dumper.represent_scalar(_STR, value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    inline = bool(value) and all(
        isinstance(v, str | int | float) and len(str(v)) <= _INLINE_MAX_CHARS and "\n" not in str(v)
        for v in value
    )
    return dumper.represent_sequence(_SEQ, value, flow_style=inline)


def _represent_float(dumper: yaml.SafeDumper, value: float) -> yaml.ScalarNode:
    if value.is_integer() and abs(value) < _EXACT_INT:
        return dumper.represent_int(int(value))
    return dumper.represent_float(value)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(float, _represent_float)
_Dumper.add_representer(list, _represent_list)


def fabric_to_yaml(spec: FabricSpec, comment: str | None = None) -> str:
    """The fabric as a YAML document, optionally headed by ``comment`` (as ``#`` lines)."""
    data = spec.model_dump(mode="json", exclude_defaults=True, exclude={"include"})
    document = {"version": spec.version, **data}
    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=WIDTH,
        default_flow_style=False,
    )
    if not comment:
        return body
    heading = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines())
    return heading + body
