"""Whether a config value (as YAML or JSON gives it) fits a Python type hint — for options declared as dataclasses.

Numbers are never bools or strings (YAML 1.1 reads ``2e-5`` as a string, which must be refused, not coerced); an int
fits a float field; lists are checked item by item; ``Literal``, unions and ``None`` are honoured.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any


def matches_type(value: Any, hint: Any) -> bool:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(matches_type(value, part) for part in arguments)
    if origin is typing.Literal:
        return value in arguments
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return isinstance(value, (list, tuple)) and all(matches_type(item, arguments[0]) for item in value if arguments)
    if hint is type(None) or hint is None:
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is typing.Any:
        return True
    return isinstance(value, hint) if isinstance(hint, type) else True
