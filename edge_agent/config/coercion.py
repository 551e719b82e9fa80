"""What pydantic's lax mode would convert silently, refused with the key instead.

`mqtt.port = true` would become port 1, `poll_interval_s = "2"` 2.0 and `retain = 1` true: each
is a setting the operator did not write. The walk follows the models over the raw TOML data, so
every problem carries its raw location, like every other configuration error.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from edge_agent.config.rules import Loc

Problem = tuple[Loc, str, Any]


def silent_coercions(data: Any, model: type[BaseModel]) -> list[Problem]:
    """(location, message, value) for each scalar of `data` that `model` would coerce."""
    return list(_walk(data, model, ()))


def _walk(data: Any, annotation: Any, loc: Loc) -> Iterator[Problem]:
    members = _members(annotation)
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if isinstance(data, dict) and models:
        model = _pick(models, data)
        if model is not None:
            for key, value in data.items():
                field = model.model_fields.get(key)
                if field is not None:
                    yield from _walk(value, field.annotation, (*loc, key))
        return
    if isinstance(data, list):
        items = [a for m in members for a in _list_items(m)]
        for i, item in enumerate(data):
            for item_type in items[:1]:
                yield from _walk(item, item_type, (*loc, i))
        return
    scalars = {m for m in members if m in (int, float, bool)}
    if not scalars or len(scalars) != len(members):
        return
    if scalars <= {int, float} and isinstance(data, bool | str):
        yield loc, f"must be a number, not {_kind(data)} (nothing is converted)", data
    elif scalars == {bool} and not isinstance(data, bool):
        yield loc, f"must be true or false, not {_kind(data)} (nothing is converted)", data


def _pick(models: list[type[BaseModel]], data: dict[str, Any]) -> type[BaseModel] | None:
    """The model a tagged union chooses for `data` (by its Literal field), or the only one."""
    if len(models) == 1:
        return models[0]
    for model in models:
        for key, field in model.model_fields.items():
            literal = typing.get_origin(field.annotation) is typing.Literal
            if literal and key in data and data[key] in typing.get_args(field.annotation):
                return model
    return None


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a union (None left out), through Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for a in typing.get_args(annotation) if a is not type(None) for m in _members(a)]
    return [annotation]


def _list_items(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(annotation)
        return [args[0]] if args else []
    return []


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return f"a {type(value).__name__}"
