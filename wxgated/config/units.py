"""Durations and sizes as operators write them in routes.yaml.

The schema patterns below and the parsers accept exactly the same strings (the parsers
use the patterns themselves), so a value that passed `wxgated check` always parses at
compile time and an editor completing against the JSON Schema flags the same typos.

Durations: "250ms", "10s", "1m", "2h", "1d", compounds such as "1m30s", fractions such
as "1.5h", and plain numbers (seconds). Sizes: "512", "10KB" (decimal, 1000), "64KiB"
(binary, 1024), up to TB/TiB, and plain integers (bytes).
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal

_NUM = r"[0-9]+(?:\.[0-9]+)?"
_DUR_UNIT = r"(?:ms|s|m|h|d)"

# ECMA 262 and Python `re` read these the same way (jsonschema uses re.search).
DURATION_PATTERN = rf"^(?:{_NUM}|(?:{_NUM}{_DUR_UNIT})+)$"
# The same, but at least one non-zero digit: rules out "0s", "0", "0m0s".
POSITIVE_DURATION_PATTERN = rf"^(?=[^1-9]*[1-9])(?:{_NUM}|(?:{_NUM}{_DUR_UNIT})+)$"
SIZE_PATTERN = rf"^{_NUM}(?:B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$"

DURATION_HINT = 'use a number and a unit (ms, s, m, h, d), e.g. "250ms", "10s", "1m30s", "2h"'
SIZE_HINT = 'use a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. "512KiB", "1MiB"'

_DUR_RE = re.compile(DURATION_PATTERN)
_SIZE_RE = re.compile(SIZE_PATTERN)
_DUR_PART = re.compile(rf"({_NUM})({_DUR_UNIT})")
_SIZE_PART = re.compile(rf"({_NUM})([A-Za-z]*)")

_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BYTES = {
    "": 1, "B": 1,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}


def parse_duration(value: str | int | float) -> float:
    """Seconds in a duration; raises ValueError naming the bad value and the syntax."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {DURATION_HINT}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    if not isinstance(value, str) or _DUR_RE.search(value) is None:
        raise ValueError(f"invalid duration {_show(value)}: {DURATION_HINT}")
    text = value.rstrip("\n")  # re.search lets "$" match before one final newline
    parts = _DUR_PART.findall(text)
    if not parts:  # a plain number: seconds
        return float(text)
    return sum(float(num) * _SECONDS[unit] for num, unit in parts)


def parse_size(value: str | int) -> int:
    """Bytes in a size; raises ValueError naming the bad value and the syntax."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}: {SIZE_HINT}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    if not isinstance(value, str) or _SIZE_RE.search(value) is None:
        raise ValueError(f"invalid size {_show(value)}: {SIZE_HINT}")
    m = _SIZE_PART.match(value)
    assert m is not None  # guaranteed by SIZE_PATTERN
    return int(Decimal(m.group(1)) * _BYTES[m.group(2)])


def _show(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return repr(value)


def parse_encryption_key(text: str) -> bytes:
    """`state.encryption_key`: 32 bytes written as base64 (std or url-safe alphabet, padding
    optional) or as 64 hex digits.

    Generate one with `python -c "import secrets; print(secrets.token_hex(32))"`.
    """
    text = text.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    b64 = text.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ValueError("state.encryption_key must be 32 bytes as 64 hex digits or base64")
    return key
