"""Typed reads of fields of parsed JSON (model specs, crop settings).

``json.load`` gives ``object``s; a spec file with a field of the wrong kind (a list where a
number belongs, ``null``) should fail with that field's name, not with a bare ``TypeError``
from ``int()`` somewhere below.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TypeGuard

Fields = Mapping[str, object]


def _is_number(value: object) -> TypeGuard[int | float | str]:
    # JSON true/false are ints to Python, never a count or a size in a spec.
    return isinstance(value, int | float | str) and not isinstance(value, bool)


def as_int(value: object, key: str) -> int:
    if _is_number(value):
        with contextlib.suppress(ValueError, OverflowError):
            return int(value)
    raise ValueError(f"{key} must be an integer, got {value!r}")


def as_float(value: object, key: str) -> float:
    if _is_number(value):
        with contextlib.suppress(ValueError):
            return float(value)
    raise ValueError(f"{key} must be a number, got {value!r}")


def as_bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"{key} must be true or false, got {value!r}")


def as_floats(value: object, key: str) -> tuple[float, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ValueError(f"{key} must be a list of numbers, got {value!r}")
    return tuple(as_float(v, key) for v in value)


def as_fields(value: object, key: str) -> Fields:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be an object, got {value!r}")
    return value
