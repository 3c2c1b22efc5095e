"""Turn pydantic's validation errors into located, actionable problems.

Each pydantic error carries a path (``loc``) into the document; the ``SourceMap`` built while
reading the YAML turns that path into file, line and column. Messages say what was found and
what would be valid: the allowed values of an enum, the valid fields of an object (with the
closest match for a typo), the required field that is missing.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from isthmus.fabric.problems import Problem, format_path
from isthmus.fabric.yamlsafe import SourceMap

__all__ = ["problems_from_validation"]

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types an annotation may hold (through Optional, Annotated, containers)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _model_at(root: type[BaseModel], loc: Iterable[str | int]) -> type[BaseModel] | None:
    """The model class at ``loc`` inside ``root``, if the path leads to one."""
    current: list[Any] = [root]
    for part in loc:
        following: list[Any] = []
        for candidate in current:
            origin = typing.get_origin(candidate)
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                field = candidate.model_fields.get(str(part))
                if field is not None:
                    following.extend(_unwrap(field.annotation))
            elif origin in (tuple, list):
                args = [a for a in typing.get_args(candidate) if a is not Ellipsis]
                following.extend(t for arg in args[:1] for t in _unwrap(arg))
            elif origin is dict:
                following.extend(_unwrap(typing.get_args(candidate)[1]))
        current = following
        if not current:
            return None
    for candidate in current:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _found(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(root: type[BaseModel], error: Any) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    value = error.get("input")
    if kind == "extra_forbidden":
        name = str(loc[-1])
        model = _model_at(root, loc[:-1])
        valid = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listed = f" Valid fields: {', '.join(valid)}." if valid else ""
        return f"unknown field {name!r}{hint}{listed}"
    if kind == "missing":
        return f"required field {str(loc[-1])!r} is missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"found {_found(value)}; expected one of {expected}"
    if kind in ("value_error", "assertion_error"):
        text = str(error["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            text = text.removeprefix(prefix)
        return text
    if kind in _TYPE_WORDS:
        return f"found {_found(value)}; expected {_TYPE_WORDS[kind]}"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        return f"found {_found(value)}; expected text matching {pattern}"
    return f"found {_found(value)}; {error['msg'][0].lower()}{error['msg'][1:]}"


def problems_from_validation(
    root: type[BaseModel], exc: ValidationError, source: SourceMap
) -> list[Problem]:
    """Located problems for every error in ``exc`` (which validated ``root``)."""
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        loc = tuple(part for part in error["loc"] if isinstance(part, str | int))
        kind = error["type"]
        if kind == "extra_forbidden":
            location = source.locate(loc, key=True)
        elif kind == "missing":
            location = source.locate(loc[:-1])
        else:
            location = source.locate(loc)
        problems.append(Problem(location, format_path(loc), _message(root, error)))
    return problems
