"""Frozen config dataclasses from plain data (the CLI, the dashboard, a stored run), through one
checked function. Light: no torch here, so the job kinds' configs can be built anywhere."""
from __future__ import annotations

import dataclasses
import types
import typing

from .errors import ConfigError


def checked_values(cls, values: dict, *, strict: bool = True) -> dict:
    """values with each one checked against its field's type in the dataclass cls (an int is
    accepted for a float). strict (what a user gave): an unknown key is a ConfigError, so a typo
    never becomes a silent default. Not strict (a stored run's config, perhaps written by an
    older version): unknown keys are dropped."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown and strict:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    return {k: _checked(k, v, hints[k]) for k, v in values.items() if k in names}


def from_values(cls, values: dict, *, strict: bool = True):
    """An instance of the frozen dataclass cls: keys left out take its defaults (see checked_values)."""
    return cls(**checked_values(cls, values, strict=strict))


def _checked(key: str, v, t):
    if isinstance(t, types.UnionType):  # X | None
        if v is None:
            return v
        t = next(a for a in typing.get_args(t) if a is not type(None))
    if t is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if (t is bool) != isinstance(v, bool) or not isinstance(v, t):
        raise ConfigError(f"config key {key!r} must be {t.__name__}, not {type(v).__name__} ({v!r})")
    return v
