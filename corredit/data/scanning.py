"""Low-level help for reading damaged files: bytes that are not UTF-8, and finding where
a broken JSON value ends.

Usage::

    from corredit.data.scanning import decode, skip_value
    text, bad = decode(b'[{"a": "\\xff"}, 2]')   # bad: BadBytes, or None for clean UTF-8
    bad.first(0, len(text))                       # text offset of the first bad byte
    bad.describe(text, 8)                         # 'not UTF-8 text: byte 0xff'
    skip_value('[{"a": 1 "b"}, 2]', 1)            # 13: the ',' that ends the broken value

:func:`decode` keeps every byte: an invalid one becomes a lone surrogate (Python's
``surrogateescape``), so the text around it still parses and only the records that hold
such a byte need to be set aside. :func:`skip_value` is a tolerant scan (strings, bracket
depth; a string ends at a line break, which valid JSON never holds inside one) used to
step over a value that the JSON parser refused and read on after it.
"""

from __future__ import annotations

from bisect import bisect_left
import json
import re

__all__ = ["BadBytes", "decode", "skip_value", "lone_surrogate", "TOO_DEEP_MESSAGE",
           "LONE_SURROGATE_MESSAGE"]

_ESCAPED = re.compile("[\udc80-\udcff]")
_SPECIAL = re.compile(r'[\[\]{},"]')
_STRING = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"?')

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

#: The message of a record whose strings hold half of a surrogate pair.
LONE_SURROGATE_MESSAGE = ("a \\u escape stands for half of a surrogate pair, which is not "
                          "Unicode text")
#: The message of a record whose nesting exceeds what the JSON parser follows.
TOO_DEEP_MESSAGE = "unreadable JSON: nested too deeply to read"


class BadBytes:
    """Where a decoded text holds bytes that were not UTF-8 (as lone surrogates)."""

    def __init__(self, text: str) -> None:
        self.positions = [m.start() for m in _ESCAPED.finditer(text)]

    def first(self, start: int, end: int) -> int | None:
        """The offset of the first bad byte in ``text[start:end]``, or None."""
        i = bisect_left(self.positions, start)
        if i < len(self.positions) and self.positions[i] < end:
            return self.positions[i]
        return None

    @staticmethod
    def search(s: str) -> int | None:
        """The offset of the first bad byte in the string ``s``, or None."""
        m = _ESCAPED.search(s)
        return m.start() if m else None

    @staticmethod
    def describe(text: str, pos: int) -> str:
        """The message for the bad byte at ``text[pos]``."""
        return f"not UTF-8 text: byte 0x{ord(text[pos]) - 0xDC00:02x}"


def lone_surrogate(text: str, start: int, end: int, value: object) -> bool:
    """Whether ``value``, parsed from ``text[start:end]``, holds a lone surrogate (from a
    ``\\ud800``-style escape); only records with such an escape are examined."""
    if _SURROGATE_ESCAPE.search(text, start, end) is None:
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):  # reported elsewhere, if at all
        return False
    return False


def decode(raw: bytes) -> tuple[str, BadBytes | None]:
    """``raw`` as text (a leading BOM dropped), and where it was not UTF-8 (None: clean)."""
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        text = raw.decode("utf-8-sig", errors="surrogateescape")
        return text, BadBytes(text)


def skip_value(text: str, pos: int) -> int | None:
    """The offset of the ``,`` or ``]`` that ends the array element starting at ``pos``
    (however broken it is), or None when the text ends first.

    Brackets are counted without checking that they match; a ``}`` at the element's own
    level is stepped over.
    """
    depth = 0
    search, string = _SPECIAL.search, _STRING.match
    while True:
        m = search(text, pos)
        if m is None:
            return None
        pos = m.start()
        ch = text[pos]
        if ch == '"':
            pos = string(text, pos).end()
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            if depth:
                depth -= 1
            elif ch == "]":
                return pos
        elif depth == 0:
            return pos
        pos += 1
