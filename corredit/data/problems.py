"""Problems found in edit-set files, and the error that strict loading raises.

Usage::

    from corredit.data.problems import Problem, DataError, MISSING_FIELD
    p = Problem(file="cf.json", index=3, field="target_new", kind=MISSING_FIELD,
                message="field is missing", case_id="17")
    str(p)   # "cf.json: record 3 (case_id '17'), field 'target_new': field is missing"
    raise DataError(p)      # a ValueError carrying the problem as ``.problem``
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Problem",
    "DataError",
    "RecordError",
    "MISSING_FIELD",
    "WRONG_TYPE",
    "EMPTY_TARGET",
    "SAME_TARGET",
    "SUBJECT_NOT_IN_PROMPT",
    "DUPLICATE_CASE_ID",
    "UNREADABLE",
    "BAD_VALUE",
    "NOT_UTF8",
    "TOO_DEEP",
    "UNREAD_REST",
    "UNKNOWN_FORMAT",
    "SUBJECT_CASE",
    "LABEL_IS_ID",
    "PROBLEM_KINDS",
]

MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
EMPTY_TARGET = "empty_target"
SAME_TARGET = "same_target"
SUBJECT_NOT_IN_PROMPT = "subject_not_in_prompt"
DUPLICATE_CASE_ID = "duplicate_case_id"
UNREADABLE = "unreadable"
BAD_VALUE = "bad_value"
NOT_UTF8 = "not_utf8"
TOO_DEEP = "too_deep"
#: The file could not be read past this point; records after it are not counted.
UNREAD_REST = "unread_rest"
UNKNOWN_FORMAT = "unknown_format"
#: Notes, not problems (the record is kept): the subject occurs in its prompt only with
#: other letter case; an entity's label is its bare Wikidata id.
SUBJECT_CASE = "subject_case"
LABEL_IS_ID = "label_is_id"

PROBLEM_KINDS: dict[str, str] = {
    MISSING_FIELD: "a required field is missing",
    WRONG_TYPE: "a field has the wrong type",
    EMPTY_TARGET: "a target is empty",
    SAME_TARGET: "the new target equals the true target",
    SUBJECT_NOT_IN_PROMPT: "the subject does not occur in its prompt",
    DUPLICATE_CASE_ID: "a case id is used twice",
    UNREADABLE: "the text is not readable JSON/CSV",
    BAD_VALUE: "a field holds an unusable value",
    NOT_UTF8: "the record's bytes are not UTF-8 text",
    TOO_DEEP: "the record is nested too deeply to read",
    UNREAD_REST: "the file could not be read from this point on",
    UNKNOWN_FORMAT: "no known format fits the file's readable records",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input record (or, with ``index=None``, with a whole file).

    ``index`` is the 0-based position of the record in its file; ``line``/``column``
    are 1-based positions in the file's text when known.
    """

    file: str
    index: int | None
    field: str | None
    kind: str
    message: str
    case_id: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.index is not None:
            rec = f"record {self.index}"
            if self.case_id is not None:
                rec += f" (case_id {self.case_id!r})"
            parts.append(rec)
        if self.field:
            parts.append(f"field {self.field!r}")
        return ", ".join(parts) + f": {self.message}"

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return {
            "file": self.file, "index": self.index, "case_id": self.case_id,
            "field": self.field, "kind": self.kind, "message": self.message,
            "line": self.line, "column": self.column,
        }


class DataError(ValueError):
    """Raised by strict loading on the first problem; ``.problem`` holds it."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class RecordError(Exception):
    """Raised while converting one record; the loader turns it into a :class:`Problem`."""

    def __init__(self, field: str | None, kind: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.kind = kind
        self.message = message
