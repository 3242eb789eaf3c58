"""Loading edit sets: one entry point for every format, with a problem report.

Usage::

    from corredit.data import load_dataset, load_records, DataError
    res = load_dataset("counterfact-edit.json")            # format detected
    res = load_dataset("facts.csv", format="triples")      # or named
    res = load_dataset("zsre.json", target="answers")      # a format option
    res = load_dataset("../shared/data/counterfact")      # every data file of a folder
    res = load_dataset("data/world-default")               # a world folder (requests.jsonl)
    res.requests, res.problems, res.n_input, res.n_set_aside
    print(res.problem_report())
    res.check()                   # prints and logs res.summary() unless res.clean
    res.check(strict=True)        # DataError on the first problem, after the whole load
    load_dataset("bad.json", strict=True)                  # DataError on the first problem

Paths in the examples are relative to the repository root (``../shared/data`` is the
shared benchmark folder beside it; :func:`corredit.data.fetch.fetch_dataset` downloads the
same files into a cache).

Default mode: every record is converted; a record with a problem is set aside (all of
its edits, for grouped formats) and the problem names the file, record index, case id
and field. ``n_kept + n_set_aside == n_input`` always holds, and a warning is logged
when anything is set aside. Strict mode raises :class:`DataError` at the first problem.

A folder holding ``requests.jsonl`` is a world folder and loads that file. Any other
folder loads each of its data files (``.json``, ``.jsonl``, ``.ndjson``, ``.csv``,
``.tsv``, not recursing), each in its detected format; readable files no format fits
are listed in ``skipped`` (a file with unreadable records is never skipped: its records
are counted and set aside). Case ids must be unique across the whole load.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import logging
from pathlib import Path
import sys
from typing import Any, TextIO

from corredit.data.corredit_jsonl import WORLD_REQUESTS_FILE
from corredit.data.formats import (
    FORMATS, DatasetFormat, FormatContext, UnknownFormatError, detect_format,
)
from corredit.data.problems import (
    DUPLICATE_CASE_ID, UNKNOWN_FORMAT, UNREAD_REST, DataError, Problem, RecordError,
)
from corredit.data.reading import (
    JSON_SUFFIXES, TABLE_SUFFIXES, RawRecord, is_unreadable, read_records,
)
from corredit.types import EditRequest

__all__ = ["LoadResult", "load_dataset", "load_records", "dataset_files"]

logger = logging.getLogger("corredit.data")


@dataclass(frozen=True)
class LoadResult:
    """What a load produced.

    ``requests``: the edit requests of the kept records, in file order.
    ``problems``: one per set-aside record (and per file-level fault).
    ``notes``: repairs made to kept records (e.g. subject matched ignoring case).
    ``n_input``: records read; ``n_set_aside``: records set aside.
    ``info``: format-specific figures (e.g. CounterFact's inferred relations).
    ``skipped``: ``(file, reason)`` for files of a folder that no format fits.
    """

    requests: list[EditRequest]
    problems: tuple[Problem, ...]
    format: str
    path: Path
    n_input: int
    n_set_aside: int
    notes: tuple[Problem, ...] = ()
    files: tuple[Path, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_kept(self) -> int:
        """Records kept (their requests are in ``requests``)."""
        return self.n_input - self.n_set_aside

    def problem_report(self, limit: int | None = 20) -> str:
        """The problems as text, one per line, ``limit`` at most (None: all)."""
        if not self.problems:
            return f"{self.path}: no problems ({self.n_input} records)"
        head = (f"{self.path}: {self.n_set_aside} of {self.n_input} records set aside, "
                f"{len(self.problems)} problem(s): " + ", ".join(
                    f"{k} {n}" for k, n in Counter(p.kind for p in self.problems).most_common()))
        shown = self.problems if limit is None else self.problems[:limit]
        lines = [head] + [f"  {p}" for p in shown]
        if len(shown) < len(self.problems):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)

    @property
    def unread_files(self) -> tuple[str, ...]:
        """Files that could not be read to their end (records past that point are not
        counted in ``n_input``)."""
        return tuple(dict.fromkeys(p.file for p in self.problems if p.kind == UNREAD_REST))

    @property
    def clean(self) -> bool:
        """True when every record was kept, no problem was met and no file skipped."""
        return not (self.n_set_aside or self.problems or self.skipped)

    def summary(self) -> str:
        """One line saying what was kept, set aside, left unread and skipped."""
        if self.clean:
            return f"{self.path}: {self.n_input} records, no problems"
        parts = [f"{self.n_set_aside} of {self.n_input} records set aside"]
        if self.problems:
            kinds = Counter(p.kind for p in self.problems).most_common()
            parts[0] += f" ({len(self.problems)} problem(s): " + ", ".join(
                f"{k} {n}" for k, n in kinds) + ")"
        unread = self.unread_files
        if unread:
            parts.append(f"{len(unread)} file(s) could not be read to its end: "
                         + ", ".join(unread))
        if self.skipped:
            parts.append(f"{len(self.skipped)} file(s) skipped (no known format): "
                         + ", ".join(f for f, _ in self.skipped))
        return f"{self.path}: " + "; ".join(parts) + "; see the problem report"

    def check(self, strict: bool = False, *, stream: TextIO | None = None) -> "LoadResult":
        """Say loudly when the data had problems; returns ``self``.

        Unless :attr:`clean`: with ``strict``, raise :class:`DataError` for the first
        problem (or skipped file); else print :meth:`summary` to ``stream`` (default:
        standard error). Loading has already logged the count as a warning.
        """
        if self.clean:
            return self
        if strict:
            first = self.problems[0] if self.problems else Problem(
                self.skipped[0][0], None, None, UNKNOWN_FORMAT, self.skipped[0][1])
            raise DataError(first)
        print(f"warning: {self.summary()}", file=sys.stderr if stream is None else stream)
        return self


def dataset_files(path: str | Path) -> tuple[list[Path], str | None]:
    """The data files a path stands for, and the format a world folder implies."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if not path.is_dir():
        return [path], None
    world = path / WORLD_REQUESTS_FILE
    if world.is_file():
        return [world], "corredit"
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and p.suffix.lower() in JSON_SUFFIXES + TABLE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{path}: the folder holds no {WORLD_REQUESTS_FILE} and no "
                                f"data files ({', '.join(JSON_SUFFIXES + TABLE_SUFFIXES)})")
    return files, None


class _Load:
    """The state of one load across its files."""

    def __init__(self, strict: bool, options: Mapping[str, Any]) -> None:
        self.strict = strict
        self.options = dict(options)
        self.problems: list[Problem] = []
        self.notes: list[Problem] = []
        self.seen: dict[str, tuple[str, int]] = {}
        self.parts: list[tuple[DatasetFormat, list[EditRequest]]] = []
        self.n_input = 0
        self.n_set_aside = 0
        self.used_options: set[str] = set()

    def fail(self, problem: Problem) -> None:
        if self.strict:
            raise DataError(problem)
        self.problems.append(problem)

    def unknown(self, file: Path, records: Sequence[RawRecord],
                read_problems: Sequence[Problem], reason: str) -> None:
        """Count a damaged file no format fits: all of its records are set aside."""
        self.n_input += len(records)
        self.n_set_aside += len(records)
        for p in read_problems:
            self.fail(p)
        readable = sum(not is_unreadable(r.value) for r in records)
        if readable:
            self.fail(Problem(str(file), None, None, UNKNOWN_FORMAT,
                              f"{readable} readable record(s) set aside: {reason}"))

    def add(self, fmt: DatasetFormat, records: Sequence[RawRecord],
            read_problems: Sequence[Problem], file: str, stem: str) -> None:
        options = fmt.check_options(self.options)
        self.used_options |= set(fmt.options)
        by_index = {p.index: p for p in read_problems if p.index is not None}
        out: list[EditRequest] = []
        id_field = fmt.case_id_field
        for raw in records:
            self.n_input += 1
            if is_unreadable(raw.value):
                self.n_set_aside += 1
                self.fail(by_index.get(raw.index) or Problem(
                    file, raw.index, None, "unreadable", "unreadable record", line=raw.line))
                continue
            ctx = FormatContext(file=file, stem=stem, options=options)
            guess = _guess_case_id(raw.value, id_field)
            try:
                reqs = fmt.convert(raw, ctx)
                local: dict[str, None] = {}
                for req in reqs:
                    first = self.seen.get(req.case_id)
                    if first is not None or req.case_id in local:
                        where = (f"record {first[1]} of {first[0]}" if first
                                 else "this record")
                        raise RecordError(id_field, DUPLICATE_CASE_ID,
                                          f"case id {req.case_id!r} is already used by {where}")
                    local[req.case_id] = None
            except RecordError as err:
                self.n_set_aside += 1
                self.fail(Problem(file, raw.index, err.field, err.kind, err.message,
                                  case_id=guess, line=raw.line, column=raw.column))
                continue
            for req in reqs:
                self.seen[req.case_id] = (file, raw.index)
            for field_name, kind, message in ctx.notes:
                self.notes.append(Problem(file, raw.index, field_name, kind, message,
                                          case_id=guess, line=raw.line, column=raw.column))
            out.extend(reqs)
        for p in read_problems:
            if p.index is None:
                self.fail(p)
        self.parts.append((fmt, out))

    def result(self, path: Path, files: Sequence[Path], format_names: Sequence[str],
               skipped: Sequence[tuple[str, str]]) -> LoadResult:
        unused = set(self.options) - self.used_options
        if unused:
            raise ValueError(f"option(s) {sorted(unused)} mean nothing to format(s) "
                             f"{sorted(set(format_names))}")
        requests: list[EditRequest] = []
        info: dict[str, Any] = {}
        done: set[str] = set()
        for fmt, _ in self.parts:  # finalize once per format, over all of its files
            if fmt.name in done:
                continue
            done.add(fmt.name)
            reqs = [r for f, rs in self.parts if f.name == fmt.name for r in rs]
            if fmt.finalize is not None and reqs:
                reqs, extra = fmt.finalize(reqs, fmt.check_options(self.options))
                info.update(extra)
            requests.extend(reqs)
        result = LoadResult(
            requests=requests, problems=tuple(self.problems),
            format=",".join(dict.fromkeys(format_names)), path=path,
            n_input=self.n_input, n_set_aside=self.n_set_aside, notes=tuple(self.notes),
            files=tuple(files), info=info, skipped=tuple(skipped), options=dict(self.options))
        if result.n_set_aside or result.problems:
            kinds = Counter(p.kind for p in result.problems)
            logger.warning("%s: %d of %d records set aside (%s); see LoadResult.problems",
                           path, result.n_set_aside, result.n_input,
                           ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
        return result


def _guess_case_id(value: Any, id_field: str) -> str | None:
    if isinstance(value, Mapping):
        for key in (id_field, "case_id"):
            v = value.get(key)
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                return str(v)
    return None


def load_dataset(path: str | Path, format: str | None = None, strict: bool = False,
                 **options: Any) -> LoadResult:
    """Load an edit-set file or folder into :class:`EditRequest` objects.

    ``format`` names a registered format (default: detected per file); ``options`` go to
    the format (e.g. ``target="answers"`` for zsRE). Raises FileNotFoundError for a
    missing path, a ValueError listing the known formats when none fits a file, and
    :class:`DataError` on the first problem when ``strict``.
    """
    path = Path(path)
    files, implied = dataset_files(path)
    fmt_name = format or implied
    if fmt_name is not None:
        FORMATS.get(fmt_name)  # unknown names fail early, listing the known ones
    state = _Load(strict, options)
    names: list[str] = []
    skipped: list[tuple[str, str]] = []
    for file in files:
        records, read_problems = read_records(file)
        name = fmt_name
        if name is None:
            try:
                name = detect_format(records, file)
            except UnknownFormatError as exc:
                damaged = bool(read_problems) or any(is_unreadable(r.value) for r in records)
                if not damaged and len(files) == 1:
                    raise
                if not damaged:
                    skipped.append((str(file), str(exc)))
                    continue
                state.unknown(file, records, read_problems,
                              str(exc).removeprefix(f"{file}: "))  # counted, set aside
                names.append("unknown")
                continue
        names.append(name)
        state.add(FORMATS.get(name), records, read_problems, str(file), file.stem)
    if not names:
        raise UnknownFormatError(f"{path}: no file of the folder fits a known format: "
                                 + "; ".join(reason for _, reason in skipped))
    return state.result(path, files, names, skipped)


def load_records(records: Iterable[Any], format: str, *, source: str = "<records>",
                 strict: bool = False, **options: Any) -> LoadResult:
    """Like :func:`load_dataset` for records already in memory (e.g. parsed JSON)."""
    fmt = FORMATS.get(format)
    raws = [RawRecord(i, v, None) for i, v in enumerate(records)]
    state = _Load(strict, options)
    state.add(fmt, raws, (), source, Path(source).stem or source)
    return state.result(Path(source), (), [format], ())
