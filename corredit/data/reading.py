"""Reading raw records from JSON, JSON Lines and CSV/TSV files.

Usage::

    from corredit.data.reading import read_records
    records, problems = read_records("counterfact-edit.json")
    records[0].index, records[0].line, records[0].value["subject"]

A JSON array is parsed element by element, so every record knows its line; a broken
element is one unreadable record and reading goes on after it (a problem of kind
``unread_rest`` marks where a file could not be read any further). In JSON Lines every
line stands alone: a broken line is one problem and the other lines load. A ``.json``
file that holds JSON Lines is read as such. CSV rows become dicts keyed by the header;
a row with more or fewer values than the header, or that the CSV reader refuses, is a
problem. Bytes that are not UTF-8 make only the records holding them unreadable
(``not_utf8``), and a record nested deeper than the parser follows is ``too_deep``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
import io
import json
from pathlib import Path
import re
from typing import Any

from corredit.data.problems import NOT_UTF8, TOO_DEEP, UNREAD_REST, UNREADABLE, Problem
from corredit.data.scanning import (
    LONE_SURROGATE_MESSAGE, TOO_DEEP_MESSAGE, BadBytes, decode, lone_surrogate, skip_value,
)

__all__ = ["RawRecord", "read_records", "is_unreadable", "TABLE_SUFFIXES", "JSON_SUFFIXES"]

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
TABLE_SUFFIXES = (".csv", ".tsv")
_WS = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True)
class RawRecord:
    """One record as read: its 0-based ``index`` in the file, the parsed ``value``, and
    the 1-based ``line`` and ``column`` where it starts, when known."""

    index: int
    value: Any
    line: int | None = None
    column: int | None = None


def read_records(path: str | Path) -> tuple[list[RawRecord], list[Problem]]:
    """All records of a file, and the problems met while reading it.

    Unreadable records count as records: each holds a problem with its ``index``.
    """
    path = Path(path)
    name = str(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ValueError(f"{name}: is a folder, not a file") from None
    text, bad = decode(raw)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _read_table(text, name, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _read_lines(text, name, bad)
    return _read_json(text, name, bad)


class _Unreadable:
    """Placeholder value of a record that could not be parsed."""


def is_unreadable(value: Any) -> bool:
    """Whether a raw record's value stands for an unparsable record."""
    return isinstance(value, _Unreadable)


def _decode_error(exc: BaseException) -> tuple[str, str]:
    """The kind and message of a failure of the JSON parser."""
    if isinstance(exc, RecursionError):
        return TOO_DEEP, TOO_DEEP_MESSAGE
    if isinstance(exc, json.JSONDecodeError):
        return UNREADABLE, f"unreadable JSON: {exc.msg}"
    return UNREADABLE, f"unreadable JSON: {exc}"


_PARSE_ERRORS = (ValueError, RecursionError)  # ValueError: also over-long integers


def _read_lines(text: str, name: str,
                bad: BadBytes | None) -> tuple[list[RawRecord], list[Problem]]:
    records: list[RawRecord] = []
    problems: list[Problem] = []
    loads = json.loads
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        index = len(records)
        at = BadBytes.search(line) if bad is not None else None
        try:
            if at is not None:
                raise UnicodeError
            value = loads(line)
            if lone_surrogate(line, 0, len(line), value):
                problems.append(Problem(name, index, None, NOT_UTF8, LONE_SURROGATE_MESSAGE,
                                        line=lineno))
                value = _Unreadable()
        except UnicodeError:
            problems.append(Problem(name, index, None, NOT_UTF8, BadBytes.describe(line, at),
                                    line=lineno, column=at + 1))
            value = _Unreadable()
        except _PARSE_ERRORS as exc:
            kind, msg = _decode_error(exc)
            problems.append(Problem(name, index, None, kind, msg, line=lineno,
                                    column=getattr(exc, "colno", None)))
            value = _Unreadable()
        records.append(RawRecord(index, value, lineno))
    return records, problems


def _read_json(text: str, name: str,
               bad: BadBytes | None) -> tuple[list[RawRecord], list[Problem]]:
    pos = _WS.match(text, 0).end()
    if pos == len(text):
        return [], []
    if text[pos] == "[":
        return _Array(text, name, bad).read(pos)
    if text[pos] == "{" and text.count("\n{", pos) >= 1:  # several objects opening lines
        return _read_lines(text, name, bad)
    try:
        value, end = json.JSONDecoder().raw_decode(text, pos)
    except _PARSE_ERRORS as exc:
        return _single_unreadable(text, name, bad, pos, exc)
    rest = _WS.match(text, end).end()
    if rest < len(text):  # more values follow on the same line(s): read line by line
        return _read_lines(text, name, bad)
    at = bad.first(pos, end) if bad is not None else None
    line = text.count("\n", 0, pos) + 1
    if at is not None:
        line, col = _position(text, at)
        return [RawRecord(0, _Unreadable(), line)], [
            Problem(name, 0, None, NOT_UTF8, BadBytes.describe(text, at), line=line, column=col)]
    if lone_surrogate(text, pos, end, value):
        return [RawRecord(0, _Unreadable(), line)], [
            Problem(name, 0, None, NOT_UTF8, LONE_SURROGATE_MESSAGE, line=line)]
    return [RawRecord(0, value, line)], []


def _single_unreadable(text: str, name: str, bad: BadBytes | None, pos: int,
                       exc: BaseException) -> tuple[list[RawRecord], list[Problem]]:
    at = bad.first(pos, len(text)) if bad is not None else None
    if at is not None:
        kind, msg = NOT_UTF8, BadBytes.describe(text, at)
        line, col = _position(text, at)
    else:
        kind, msg = _decode_error(exc)
        line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        if line is None:
            line, col = _position(text, pos)
    return [RawRecord(0, _Unreadable(), line)], [
        Problem(name, 0, None, kind, msg, line=line, column=col)]


class _Array:
    """Reads a top-level JSON array element by element, reading on after broken ones."""

    def __init__(self, text: str, name: str, bad: BadBytes | None) -> None:
        self.text, self.name, self.bad = text, name, bad
        self.records: list[RawRecord] = []
        self.problems: list[Problem] = []
        self.decoder = json.JSONDecoder()
        self._line, self._line_pos, self._line_start = 1, 0, 0

    def _where(self, pos: int) -> tuple[int, int]:
        """1-based line and column of ``pos``, counted on from the previous call."""
        if pos < self._line_pos:
            return _position(self.text, pos)
        newlines = self.text.count("\n", self._line_pos, pos)
        if newlines:
            self._line += newlines
            self._line_start = self.text.rfind("\n", self._line_pos, pos) + 1
        self._line_pos = pos
        return self._line, pos - self._line_start + 1

    def read(self, pos: int) -> tuple[list[RawRecord], list[Problem]]:
        text, ws = self.text, _WS.match
        pos = ws(text, pos + 1).end()
        if pos < len(text) and text[pos] == "]":
            return self._trailing(pos + 1)
        missing_comma = False
        while True:
            end = self._element(pos, missing_comma)
            if end is None:
                return self.records, self.problems
            missing_comma = False
            pos = ws(text, end).end()
            if pos >= len(text):
                line, col = _position(text, pos)
                self.problems.append(Problem(self.name, None, None, UNREADABLE,
                                             "unreadable JSON: the array is not closed",
                                             line=line, column=col))
                return self.records, self.problems
            if text[pos] == ",":
                nxt = ws(text, pos + 1).end()
                if nxt < len(text) and text[nxt] == "]":
                    line, col = _position(text, pos)
                    self.problems.append(Problem(
                        self.name, None, None, UNREADABLE,
                        "unreadable JSON: a ',' before the closing ']'", line=line, column=col))
                    return self._trailing(nxt + 1)
                pos = nxt
            elif text[pos] == "]":
                return self._trailing(pos + 1)
            else:
                missing_comma = True

    def _element(self, pos: int, missing_comma: bool) -> int | None:
        """Read the element at ``pos``; the offset after it, None when reading stops."""
        text, index = self.text, len(self.records)
        line, col = self._where(pos)
        try:
            value, end = self.decoder.raw_decode(text, pos)
            failure: BaseException | None = None
        except _PARSE_ERRORS as exc:
            failure, end = exc, skip_value(text, pos)
        at = None
        if self.bad is not None:
            at = self.bad.first(pos, len(text) if end is None else end)
        if at is not None:
            kind, msg = NOT_UTF8, BadBytes.describe(text, at)
            line, col = _position(text, at)
        elif failure is not None:
            kind, msg = _decode_error(failure)
            line = getattr(failure, "lineno", line)
            col = getattr(failure, "colno", col)
        elif missing_comma:
            kind, msg = UNREADABLE, "unreadable JSON: expected ',' or ']' before this record"
        elif lone_surrogate(text, pos, end, value):
            kind, msg = NOT_UTF8, LONE_SURROGATE_MESSAGE
        else:
            self.records.append(RawRecord(index, value, line, col))
            return end
        if end is None:
            kind, msg = UNREAD_REST, msg + "; the file could not be read from here on"
        self.records.append(RawRecord(index, _Unreadable(), line, col))
        self.problems.append(Problem(self.name, index, None, kind, msg, line=line, column=col))
        return end

    def _trailing(self, pos: int) -> tuple[list[RawRecord], list[Problem]]:
        pos = _WS.match(self.text, pos).end()
        if pos < len(self.text):
            line, col = _position(self.text, pos)
            self.problems.append(Problem(
                self.name, None, None, UNREAD_REST,
                "unreadable JSON: extra data after the array; it was not read",
                line=line, column=col))
        return self.records, self.problems


def _position(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _read_table(text: str, name: str, delimiter: str) -> tuple[list[RawRecord], list[Problem]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter,
                            restkey="\0extra", restval=None)
    records: list[RawRecord] = []
    problems: list[Problem] = []

    def unreadable(kind: str, message: str, line: int, field: str | None = None) -> None:
        problems.append(Problem(name, len(records), field, kind, message, line=line))
        records.append(RawRecord(len(records), _Unreadable(), line))

    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        return [], [Problem(name, None, None, UNREAD_REST, f"unreadable CSV header: {exc}; "
                            f"the file could not be read", line=reader.line_num)]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        return [], [Problem(name, None, None, UNREAD_REST,
                            f"the header repeats column(s) {dup}; the file was not read",
                            line=1)]
    rows, source = iter(reader), reader.reader  # source: counts lines even on errors
    while True:
        before = source.line_num
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            if source.line_num == before:  # the reader cannot move on
                unreadable(UNREAD_REST, f"unreadable CSV: {exc}; the file could not be read "
                                        f"from here on", source.line_num)
                break
            unreadable(UNREADABLE, f"unreadable CSV: {exc}", source.line_num)
            continue
        line = reader.line_num
        if "\0extra" in row:
            extra = row.pop("\0extra")
            unreadable(UNREADABLE, f"row has {len(extra)} more value(s) than the header's "
                                   f"{len(header)} columns", line)
            continue
        missing = [k for k, v in row.items() if v is None]
        if missing:
            unreadable(UNREADABLE, f"row has fewer values than the header: no value for "
                                   f"{missing}", line, missing[0])
            continue
        if _bad_cell(row, name, len(records), line, problems):
            records.append(RawRecord(len(records), _Unreadable(), line))
            continue
        records.append(RawRecord(len(records), row, line))
    return records, problems


def _bad_cell(row: dict[str, str], name: str, index: int, line: int,
              problems: list[Problem]) -> bool:
    """Whether a CSV row holds a byte that is not UTF-8 (a problem is added)."""
    for key, cell in row.items():
        for where, s in (("the header's column name", key), ("the value", cell)):
            at = BadBytes.search(s)
            if at is not None:
                problems.append(Problem(name, index, key, NOT_UTF8,
                                        f"{BadBytes.describe(s, at)} in {where}", line=line))
                return True
    return False
