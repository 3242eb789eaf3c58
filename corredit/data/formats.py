"""The registry of edit-set formats and format detection.

Usage::

    from corredit.data.formats import FORMATS, DatasetFormat, register_format, detect_format
    from corredit.data.fields import build_request, text
    FORMATS.names()            # ['corredit', 'counterfact', 'counterfact-flat', ...]
    FORMATS.get("zsre").options  # {'target': 'alt'}

    register_format(DatasetFormat(
        name="my-facts", description="one fact per record: who, did, what",
        sniff=lambda rec, path: {"who", "did", "what"} <= rec.keys(),
        convert=lambda raw, ctx: [build_request(
            case_id=ctx.generated_id(raw.index), subject=text(raw.value, "who"),
            relation_id=text(raw.value, "did"), prompt="{} " + text(raw.value, "did"),
            target_new=text(raw.value, "what"))]))

A format is a :class:`DatasetFormat`: a ``sniff`` test on one record, a ``convert``
function turning one raw record into edit requests (raising
:class:`~corredit.data.problems.RecordError` on bad input), and an optional
``finalize`` step over all converted requests of a load (CounterFact's flattened layout
uses it to infer relations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corredit.data.problems import RecordError
from corredit.data.reading import RawRecord, is_unreadable
from corredit.registry import Registry
from corredit.types import EditRequest

__all__ = [
    "FORMATS", "DatasetFormat", "FormatContext", "register_format", "detect_format",
    "UnknownFormatError",
]

FORMATS: Registry["DatasetFormat"] = Registry(
    "dataset format", hint="Pick one with format=NAME (corredit data info --format NAME)")


@dataclass
class FormatContext:
    """What a converter may know about its input: the file (for messages), its stem
    (for generated case ids), the load options, and a place to leave notes."""

    file: str
    stem: str
    options: Mapping[str, Any] = field(default_factory=dict)
    notes: list[tuple[str | None, str, str]] = field(default_factory=list)

    def note(self, field_name: str | None, kind: str, message: str) -> None:
        """Record a repair made to the current record (the record is kept)."""
        self.notes.append((field_name, kind, message))

    def generated_id(self, index: int) -> str:
        """The case id of a record whose format has none: ``<file stem>:<index>``."""
        return f"{self.stem}:{index}"


Convert = Callable[[RawRecord, FormatContext], list[EditRequest]]
Finalize = Callable[[list[EditRequest], Mapping[str, Any]], tuple[list[EditRequest], dict]]


@dataclass(frozen=True)
class DatasetFormat:
    """One registered edit-set format.

    ``sniff(record, path)`` says whether a record looks like this format;
    ``case_id_field`` names the field duplicate ids are reported under; ``options``
    maps each load option to its default; among several formats that fit, the one with
    the highest ``priority`` wins.
    """

    name: str
    description: str
    sniff: Callable[[Mapping[str, Any], Path], bool]
    convert: Convert
    case_id_field: str = "case_id"
    finalize: Finalize | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    option_choices: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    priority: int = 0

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``options``; a ValueError for a bad choice."""
        out = dict(self.options)
        for key, val in options.items():
            if key not in self.options:
                continue
            choices = self.option_choices.get(key)
            if choices is not None and val not in choices:
                raise ValueError(f"format {self.name!r}: option {key}={val!r} is not one of "
                                 f"{list(choices)}")
            out[key] = val
        return out


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    """Add ``fmt`` to :data:`FORMATS` under its name; returns it."""
    FORMATS.add(fmt.name, fmt)
    return fmt


class UnknownFormatError(ValueError):
    """No registered format fits a file."""


def detect_format(records: Sequence[RawRecord], path: Path | str, *,
                  sample: int = 20) -> str:
    """The name of the format that fits the first ``sample`` readable records best.

    Raises :class:`UnknownFormatError` listing the known formats when none fits.
    """
    path = Path(path)
    values = [r.value for r in records if not is_unreadable(r.value)][:sample]
    dicts = [v for v in values if isinstance(v, Mapping)]
    known = ", ".join(FORMATS.names())
    if not dicts:
        what = "no records" if not values else "no JSON objects"
        raise UnknownFormatError(
            f"{path}: cannot tell the format: the file has {what}; known formats: {known}")
    best: tuple[int, int, str] | None = None
    for name in FORMATS.names():
        fmt = FORMATS.get(name)
        hits = 0
        for v in dicts:
            try:
                hits += bool(fmt.sniff(v, path))
            except (RecordError, TypeError, AttributeError, KeyError):
                pass
        if hits and (best is None or (hits, fmt.priority) > best[:2]):
            best = (hits, fmt.priority, name)
    if best is None:
        keys = sorted(dicts[0])[:12]
        raise UnknownFormatError(
            f"{path}: no known dataset format fits (first record's fields: {keys}); "
            f"known formats: {known}. Pass one with --format NAME")
    return best[2]
