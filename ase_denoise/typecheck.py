"""Values read from files (a model's JSON metadata, a registry) against their declared types and documented
ranges: a hostile or careless file gets an error naming the field, not a conversion that hides it
(``"16"`` or ``16.5`` channels) or a size that makes loading hang."""

from __future__ import annotations

import math
import typing
from typing import Any, Optional, Union


def type_error(where: str, value: Any, expected: Any) -> Optional[str]:
    """Why ``value`` (parsed JSON) is not of the annotated type ``expected``, or None when it is.

    JSON's own forms are accepted (lists for tuples, numbers written as integers for floats, string
    keys for integer keys); nothing else is converted: ``"16"``, ``16.5`` or ``true`` for an integer,
    ``"yes"`` for a boolean, a string for a list are refused."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return None
    if origin is Union:
        if value is None and type(None) in args:
            return None
        reasons = [type_error(where, value, a) for a in args if a is not type(None)]
        return None if any(r is None for r in reasons) else reasons[0]
    if expected is bool:
        return None if isinstance(value, bool) else f"{where} must be true or false, not {value!r}"
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{where} must be an integer, not {value!r}"
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"{where} must be a number, not {value!r}"
    if expected is str:
        return None if isinstance(value, str) else f"{where} must be a string, not {value!r}"
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return f"{where} must be a list, not {value!r}"
        if origin is tuple and Ellipsis not in args:  # a fixed length: pbc's three booleans
            if len(value) != len(args):
                return f"{where} must have {len(args)} entries, not {len(value)}"
            types = list(args)
        else:
            types = [args[0] if args else Any] * len(value)
        return next((why for i, (item, kind) in enumerate(zip(value, types))
                     if (why := type_error(f"{where}[{i}]", item, kind))), None)
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where} must be a mapping, not {value!r}"
        key_type, value_type = args
        for k, v in value.items():
            if key_type is int and not (isinstance(k, int) and not isinstance(k, bool)
                                        or isinstance(k, str) and k.strip().lstrip("-").isdigit()):
                return f"{where} keys must be integers, not {k!r}"
            why = type_error(f"{where}[{k!r}]", v, value_type)
            if why:
                return why
        return None
    return None


def in_range(name: str, value: Any, low: float, high: float, unit: str = "") -> None:
    """Refuse ``value`` outside ``[low, high]`` (also NaN): the documented sane range of a field."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        raise ValueError(f"invalid {name}={value!r}: must be between {low:g} and {high:g}{unit}")
