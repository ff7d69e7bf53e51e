"""Typed reads of fields of parsed JSON (model specs, crop settings).

``json.load`` gives ``object``s; a spec file with a field of the wrong kind (a list where a
number belongs, ``null``) should fail with that field's name, not with a bare ``TypeError``
from ``int()`` somewhere below.
"""

from __future__ import annotations

from collections.abc import Mapping

Fields = Mapping[str, object]


def _number(value: object, key: str, kind: str) -> float | int | str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} must be {kind}, got {value!r}")
    return value


def as_int(value: object, key: str) -> int:
    try:
        return int(_number(value, key, "an integer"))
    except ValueError as exc:
        raise ValueError(f"{key} must be an integer, got {value!r}") from exc


def as_float(value: object, key: str) -> float:
    try:
        return float(_number(value, key, "a number"))
    except ValueError as exc:
        raise ValueError(f"{key} must be a number, got {value!r}") from exc


def as_floats(value: object, key: str) -> tuple[float, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ValueError(f"{key} must be a list of numbers, got {value!r}")
    return tuple(as_float(v, key) for v in value)


def as_fields(value: object, key: str) -> Fields:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be an object, got {value!r}")
    return value
