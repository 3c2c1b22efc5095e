"""A hardened YAML reader that remembers where every value came from.

Invariants:

- Input is UTF-8 and at most ``Limits.max_bytes``; anything else is refused with the byte's
  line and column, never decoded loosely.
- The document is built in one iterative pass over libyaml's event stream (no recursion), so
  deep nesting is refused at ``Limits.max_depth`` instead of overflowing the stack, and alias
  expansion is *counted*: a billion-laughs file is refused once the expanded size passes
  ``Limits.max_nodes``, long before it costs memory or time.
- Only YAML 1.2 core-schema plain data is built (maps, lists, strings, numbers, booleans,
  null). Explicit language tags (``!!python/...``) and non-string keys are refused; duplicate
  keys are refused with both locations.
- Every value's location is kept in a ``SourceMap`` keyed by its path, so a later check (the
  schema, a cross-reference) can point at the exact line and column of the field it rejects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from isthmus.fabric.problems import FabricError, Location, Problem, format_path

__all__ = ["DEFAULT_LIMITS", "Limits", "SourceMap", "load_yaml_file", "load_yaml_text"]

PathKey = tuple[str | int, ...]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_MERGE = _TAG + "merge"

# YAML 1.2 core schema, not PyYAML's YAML 1.1 defaults: in a file full of country codes,
# ``NO`` (Norway) must stay text rather than become ``False``, and ``10:30`` must not become
# the sexagesimal integer 630.
_PLAIN_TYPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(?:~|null|Null|NULL|)$"), "null"),
    (re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "bool"),
    (re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "int"),
    (
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        "float",
    ),
    (re.compile(r"^<<$"), "merge"),
)


def _resolve_plain(value: str) -> str:
    for pattern, kind in _PLAIN_TYPES:
        if pattern.match(value):
            return _TAG + kind
    return _STR


def _to_int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _to_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(text)


def _to_bool(text: str) -> bool:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise ValueError(text)


def _to_null(text: str) -> None:
    if text not in ("", "~", "null", "Null", "NULL"):
        raise ValueError(text)


_SCALAR_BUILDERS: dict[str, Callable[[str], Any]] = {
    _TAG + "null": _to_null,
    _TAG + "bool": _to_bool,
    _TAG + "int": _to_int,
    _TAG + "float": _to_float,
    _STR: str,
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a single YAML file may cost to read."""

    max_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    max_nodes: int = 2_000_000


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class SourceMap:
    """Locations of values (and of mapping keys) by their path in the document."""

    file: str
    values: dict[PathKey, Location] = field(default_factory=dict)
    keys: dict[PathKey, Location] = field(default_factory=dict)

    def locate(self, path: PathKey, *, key: bool = False) -> Location:
        """The location of ``path``, or of its nearest recorded ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        probe = path
        while probe:
            found = self.values.get(probe)
            if found is not None:
                return found
            probe = probe[:-1]
        return self.values.get((), Location(self.file, 1, 1))

    def merge(self, other: SourceMap, prefix: PathKey = ()) -> None:
        for path, loc in other.values.items():
            self.values[prefix + path] = loc
        for path, loc in other.keys.items():
            self.keys[prefix + path] = loc


@dataclass(slots=True)
class _Frame:
    container: dict[str, Any] | list[Any]
    path: PathKey
    anchor: str | None
    start_count: int
    pending_key: str | None = None
    pending_key_is_merge: bool = False
    merges: list[tuple[Any, Location]] = field(default_factory=list)


class _Builder:
    def __init__(self, file: str, text: str, limits: Limits) -> None:
        self.file = file
        self.text = text
        self.limits = limits
        self.source = SourceMap(file)
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.stack: list[_Frame] = []
        self.nodes = 0
        self.root: Any = None
        self.documents = 0

    def loc(self, mark: Any) -> Location:
        return Location(self.file, mark.line + 1, mark.column + 1)

    def fail(self, mark: Any, path: PathKey, message: str) -> FabricError:
        self.problems.append(Problem(self.loc(mark), format_path(path), message))
        return FabricError(self.problems)

    def child_path(self) -> PathKey:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.container, list):
            return (*top.path, len(top.container))
        return (*top.path, "<<" if top.pending_key is None else top.pending_key)

    def count(self, n: int, mark: Any) -> None:
        self.nodes += n
        if self.nodes > self.limits.max_nodes:
            raise self.fail(
                mark,
                self.child_path(),
                f"document expands to more than {self.limits.max_nodes:,} values "
                "(alias expansion or sheer size); refused to protect the reader",
            )

    def expecting_key(self) -> bool:
        return (
            bool(self.stack)
            and isinstance(self.stack[-1].container, dict)
            and (self.stack[-1].pending_key is None and not self.stack[-1].pending_key_is_merge)
        )

    def attach(self, value: Any, mark: Any) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if isinstance(top.container, list):
            top.container.append(value)
            return
        if top.pending_key_is_merge:
            top.merges.append((value, self.loc(mark)))
            top.pending_key_is_merge = False
            return
        assert top.pending_key is not None
        top.container[top.pending_key] = value
        top.pending_key = None

    def scalar(self, event: Any) -> None:
        self.count(1, event.start_mark)
        tag = event.tag
        if tag is None:
            tag = _resolve_plain(event.value) if event.implicit[0] else _STR
        elif tag == "!":
            tag = _STR
        if self.expecting_key():
            self.key(event, tag)
            return
        builder = _SCALAR_BUILDERS.get(tag)
        path = self.child_path()
        if builder is None:
            raise self.fail(event.start_mark, path, f"YAML tag {tag!r} is not allowed here")
        try:
            value = builder(event.value)
        except ValueError:
            raise self.fail(
                event.start_mark, path, f"cannot read {event.value!r} as {tag.rsplit(':', 1)[-1]}"
            ) from None
        self.source.values[path] = self.loc(event.start_mark)
        if event.anchor:
            self.anchors[event.anchor] = (value, 1)
        self.attach(value, event.start_mark)

    def key(self, event: Any, tag: str) -> None:
        top = self.stack[-1]
        assert isinstance(top.container, dict)
        if tag == _MERGE:
            top.pending_key_is_merge = True
            return
        if tag != _STR:
            raise self.fail(
                event.start_mark,
                (*top.path, event.value),
                f"mapping keys must be text; {event.value!r} reads as "
                f"{tag.rsplit(':', 1)[-1]} (quote it)",
            )
        key = event.value
        path = (*top.path, key)
        if key in top.container or path in self.source.keys:
            first = self.source.keys.get(path)
            where = f" (first at line {first.line}, column {first.column})" if first else ""
            self.problems.append(
                Problem(
                    self.loc(event.start_mark),
                    format_path(path),
                    f"duplicate key {key!r}{where}; each key may appear once",
                )
            )
        self.source.keys[path] = self.loc(event.start_mark)
        top.pending_key = key

    def start(self, event: Any, container: dict[str, Any] | list[Any]) -> None:
        if self.expecting_key():
            raise self.fail(
                event.start_mark, self.stack[-1].path, "mapping keys must be plain text"
            )
        self.count(1, event.start_mark)
        if event.tag not in (None, "!") and event.tag not in (
            "tag:yaml.org,2002:map",
            "tag:yaml.org,2002:seq",
        ):
            raise self.fail(
                event.start_mark, self.child_path(), f"YAML tag {event.tag!r} is not allowed"
            )
        path = self.child_path()
        if len(self.stack) >= self.limits.max_depth:
            raise self.fail(
                event.start_mark,
                path[:4],
                f"nesting deeper than {self.limits.max_depth} levels is refused",
            )
        self.source.values[path] = self.loc(event.start_mark)
        self.stack.append(_Frame(container, path, event.anchor, self.nodes))

    def end(self, event: Any) -> None:
        frame = self.stack.pop()
        if isinstance(frame.container, dict):
            for merged, location in frame.merges:
                sources = merged if isinstance(merged, list) else [merged]
                for source in sources:
                    if not isinstance(source, dict):
                        self.problems.append(
                            Problem(location, format_path(frame.path), "'<<' must merge a mapping")
                        )
                        continue
                    for k, v in source.items():
                        if k not in frame.container:
                            frame.container[k] = v
                            self.source.values.setdefault((*frame.path, k), location)
        if frame.anchor:
            self.anchors[frame.anchor] = (frame.container, self.nodes - frame.start_count + 1)
        self.attach(frame.container, event.end_mark)

    def alias(self, event: Any) -> None:
        found = self.anchors.get(event.anchor)
        if found is None:
            raise self.fail(event.start_mark, self.child_path(), f"unknown alias *{event.anchor}")
        value, size = found
        if self.expecting_key():
            raise self.fail(event.start_mark, self.stack[-1].path, "an alias cannot be a key")
        self.count(size, event.start_mark)
        path = self.child_path()
        self.source.values[path] = self.loc(event.start_mark)
        self.attach(value, event.start_mark)

    def run(self) -> Any:
        for event in yaml.parse(self.text, Loader=_Loader):
            if isinstance(event, yaml.ScalarEvent):
                self.scalar(event)
            elif isinstance(event, yaml.MappingStartEvent):
                self.start(event, {})
            elif isinstance(event, yaml.SequenceStartEvent):
                self.start(event, [])
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                self.end(event)
            elif isinstance(event, yaml.AliasEvent):
                self.alias(event)
            elif isinstance(event, yaml.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    raise self.fail(event.start_mark, (), "only one YAML document per file")
        if self.problems:
            raise FabricError(self.problems)
        return self.root


def _line_column(data: bytes | str, offset: int) -> tuple[int, int]:
    before = data[:offset]
    newline: Any = b"\n" if isinstance(data, bytes) else "\n"
    line = before.count(newline) + 1
    column = offset - (before.rfind(newline) + 1) + 1
    return line, column


def load_yaml_text(text: str, file: str, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data and the locations of its values."""
    builder = _Builder(file, text, limits)
    try:
        value = builder.run()
    except FabricError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise FabricError(
            [Problem(Location(file, line, column), "", f"invalid YAML: {what}")]
        ) from None
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        raise FabricError(
            [Problem(Location(file, line, column), "", f"invalid YAML: {exc.reason}")]
        ) from None
    except yaml.YAMLError as exc:
        raise FabricError([Problem(Location(file, 1, 1), "", f"invalid YAML: {exc}")]) from None
    return value, builder.source


def load_yaml_file(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, SourceMap]:
    """Read a YAML file with the bounds in ``limits``; see ``load_yaml_text``."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise FabricError(
            [Problem(Location(name, 1, 1), "", f"cannot read file: {exc.strerror}")]
        ) from None
    if len(data) > limits.max_bytes:
        raise FabricError(
            [
                Problem(
                    Location(name, 1, 1),
                    "",
                    f"file is larger than {limits.max_bytes:,} bytes; refused",
                )
            ]
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(data, exc.start)
        raise FabricError(
            [
                Problem(
                    Location(name, line, column),
                    "",
                    f"invalid UTF-8 (byte 0x{data[exc.start]:02x}); files must be UTF-8",
                )
            ]
        ) from None
    return load_yaml_text(text, name, limits)
