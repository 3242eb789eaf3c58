"""Reading raw records from JSON, JSON Lines and CSV/TSV files.

Usage::

    from corredit.data.reading import read_records
    records, problems = read_records("counterfact-edit.json")
    records[0].index, records[0].line, records[0].value["subject"]

A JSON array is parsed element by element, so every record knows its line and a
syntax error keeps the records before it (the problem says from where on the file
could not be read). In JSON Lines every line stands alone: a broken line is one
problem and the other lines load. A ``.json`` file that holds JSON Lines is read as
such. CSV rows become dicts keyed by the header; a row with more or fewer values
than the header is a problem.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
import io
import json
from pathlib import Path
import re
from typing import Any

from corredit.data.problems import Problem, UNREADABLE

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
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [Problem(name, None, None, UNREADABLE,
                            f"not UTF-8 text (byte {exc.start}: {exc.reason})")]
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _read_table(text, name, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _read_lines(text, name)
    return _read_json(text, name)


def _read_lines(text: str, name: str) -> tuple[list[RawRecord], list[Problem]]:
    records: list[RawRecord] = []
    problems: list[Problem] = []
    loads = json.loads
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        index = len(records)
        try:
            value = loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(name, index, None, UNREADABLE,
                                    f"unreadable JSON: {exc.msg}", line=lineno,
                                    column=exc.colno))
            value = _Unreadable()
        records.append(RawRecord(index, value, lineno))
    return records, problems


class _Unreadable:
    """Placeholder value of a record that could not be parsed."""


def is_unreadable(value: Any) -> bool:
    """Whether a raw record's value stands for an unparsable record."""
    return isinstance(value, _Unreadable)


def _read_json(text: str, name: str) -> tuple[list[RawRecord], list[Problem]]:
    pos = _WS.match(text, 0).end()
    if pos == len(text):
        return [], []
    decoder = json.JSONDecoder()
    if text[pos] == "{":
        if text.count("\n{", pos) >= 1:  # several objects opening lines: JSON Lines
            return _read_lines(text, name)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            return [RawRecord(0, _Unreadable(), exc.lineno)], [
                Problem(name, 0, None, UNREADABLE, f"unreadable JSON: {exc.msg}",
                        line=exc.lineno, column=exc.colno)]
        rest = _WS.match(text, end).end()
        if rest < len(text):  # more values follow on the same line(s): read line by line
            return _read_lines(text, name)
        return [RawRecord(0, value, text.count("\n", 0, pos) + 1)], []
    if text[pos] != "[":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return [RawRecord(0, _Unreadable(), exc.lineno)], [
                Problem(name, 0, None, UNREADABLE, f"unreadable JSON: {exc.msg}",
                        line=exc.lineno, column=exc.colno)]
        return [RawRecord(0, value, 1)], []
    return _read_array(text, name, pos, decoder)


def _read_array(text: str, name: str, pos: int,
                decoder: json.JSONDecoder) -> tuple[list[RawRecord], list[Problem]]:
    records: list[RawRecord] = []
    ws = _WS.match
    line, line_pos, line_start = 1, 0, 0  # line_start: offset where the current line starts
    pos = ws(text, pos + 1).end()
    if pos < len(text) and text[pos] == "]":
        return _check_trailing(text, name, pos + 1, records, [])
    while True:
        newlines = text.count("\n", line_pos, pos)
        if newlines:
            line += newlines
            line_start = text.rfind("\n", line_pos, pos) + 1
        line_pos = pos
        index = len(records)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            return records + [RawRecord(index, _Unreadable(), exc.lineno)], [
                _array_break(name, index, exc.msg, exc.lineno, exc.colno)]
        records.append(RawRecord(index, value, line, pos - line_start + 1))
        pos = ws(text, end).end()
        if pos >= len(text):
            lineno, col = _position(text, pos)
            return records, [Problem(name, None, None, UNREADABLE,
                                     "unreadable JSON: the array is not closed",
                                     line=lineno, column=col)]
        if text[pos] == ",":
            pos = ws(text, pos + 1).end()
            continue
        if text[pos] == "]":
            return _check_trailing(text, name, pos + 1, records, [])
        lineno, col = _position(text, pos)
        return records + [RawRecord(index + 1, _Unreadable(), lineno)], [
            _array_break(name, index + 1, "expected ',' or ']'", lineno, col)]


def _array_break(name: str, index: int, msg: str, line: int, col: int) -> Problem:
    return Problem(name, index, None, UNREADABLE,
                   f"unreadable JSON: {msg}; the file could not be read from here on",
                   line=line, column=col)


def _check_trailing(text: str, name: str, pos: int, records: list[RawRecord],
                    problems: list[Problem]) -> tuple[list[RawRecord], list[Problem]]:
    pos = _WS.match(text, pos).end()
    if pos < len(text):
        line, col = _position(text, pos)
        problems.append(Problem(name, None, None, UNREADABLE,
                                "unreadable JSON: extra data after the array",
                                line=line, column=col))
    return records, problems


def _position(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _read_table(text: str, name: str, delimiter: str) -> tuple[list[RawRecord], list[Problem]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter,
                            restkey="\0extra", restval=None)
    records: list[RawRecord] = []
    problems: list[Problem] = []
    try:
        header = reader.fieldnames or []
        if len(set(header)) != len(header):
            dup = sorted({h for h in header if header.count(h) > 1})
            return [], [Problem(name, None, None, UNREADABLE,
                                f"the header repeats column(s) {dup}", line=1)]
        for row in reader:
            index = len(records)
            line = reader.line_num
            if "\0extra" in row:
                extra = row.pop("\0extra")
                problems.append(Problem(name, index, None, UNREADABLE,
                                        f"row has {len(extra)} more value(s) than the "
                                        f"header's {len(header)} columns", line=line))
                records.append(RawRecord(index, _Unreadable(), line))
                continue
            if any(v is None for v in row.values()):
                missing = [k for k, v in row.items() if v is None]
                problems.append(Problem(name, index, missing[0], UNREADABLE,
                                        f"row has fewer values than the header: no "
                                        f"value for {missing}", line=line))
                records.append(RawRecord(index, _Unreadable(), line))
                continue
            records.append(RawRecord(index, row, line))
    except csv.Error as exc:
        problems.append(Problem(name, len(records), None, UNREADABLE,
                                f"unreadable CSV: {exc}; the file could not be read from "
                                f"here on", line=reader.line_num))
        records.append(RawRecord(len(records), _Unreadable(), reader.line_num))
    return records, problems
