"""Numbers that clients send as ids, cursors and byte counts, parsed in one place.

``str.isdigit`` is true for "¹" and "٣", which ``int`` refuses or reads as another digit,
and a number past the column's range fails in the database driver, not here: both were
500s. Only ASCII digits (or a JSON integer) within the range are accepted; anything else
is an ``InvalidInput`` that names the field.
"""

from __future__ import annotations

import re
from typing import Any

from server.errors import InvalidInput

# Ids are BIGINT (signed 64-bit) on MariaDB and INTEGER (also 64-bit) on SQLite.
BIGINT_MAX = 2**63 - 1
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


def parse_id(value: Any, field: str, *, maximum: int = BIGINT_MAX) -> int:
    """A non-negative integer from a JSON integer or a string of ASCII digits, at most ``maximum``."""
    number = as_id(value, maximum=maximum)
    if number is None:
        given = "it is missing" if value is None else f"not {str(value)[:40]!r}"
        raise InvalidInput(f"`{field}` must be a whole number from 0 to {maximum}; {given}.")
    return number


def parse_ids(values: Any, field: str, *, max_items: int) -> list[int]:
    """A JSON list of at most ``max_items`` ids."""
    if not isinstance(values, list) or len(values) > max_items:
        raise InvalidInput(f"`{field}` must be a list of at most {max_items} ids.")
    return [parse_id(value, field) for value in values]


def as_id(value: Any, *, maximum: int = BIGINT_MAX) -> int | None:
    """``parse_id`` for lookups where a malformed id simply matches nothing (None)."""
    if isinstance(value, bool):  # JSON true is not the id 1
        return None
    if isinstance(value, float) and value.is_integer():  # JSON has one number type: 7.0 is 7
        value = int(value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _ASCII_DIGITS.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 0 <= number <= maximum else None
