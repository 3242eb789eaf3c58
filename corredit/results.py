"""Run folders: the tidy results schema, atomic per-trial writes, and reading a run back.

Usage::

    from corredit.results import RunFolder
    run = RunFolder("runs/demo")
    run.write_config({"editors": ["memit"], ...})
    run.write_trial("memit-random-b16-s0", rows_df, schedule=schedule_df)
    run.finished_trials()          # {'memit-random-b16-s0'}
    df = run.read_results()         # one tidy long table over every finished trial
    with run.lock():                # one writer at a time; a second gets RunFolderBusy
        ...

Layout of a run folder::

    config.json                 the run's configuration (as given, plus code version)
    edits.jsonl                 the run's edits (one EditRequest.to_dict() per line)
    trials/<trial>.parquet      tidy rows of one finished trial (written atomically)
    schedules/<trial>.parquet   the schedule the trial used (batch, position, index, case_id)
    graph_edges.parquet         correlation graph edge list (optional)
    results.parquet             all trials concatenated (refreshed by ``consolidate``)
    log.jsonl                   one line per trial event
    .lock                       held by the run writing to the folder

A trial's parquet appears only once the trial is complete (write to a temporary name, then
``os.replace``), so a killed run loses at most the trial in flight; re-running resumes.
A trial file that does not read as parquet (emptied or cut short) does not count as
finished and is set aside as ``<trial>.parquet.broken``.
Torch-free.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import pandas as pd

from corredit.atomic import atomic_write_parquet, atomic_write_text
from corredit.types import EditRequest

__all__ = [
    "RESULT_COLUMNS",
    "CONFIG_COLUMNS",
    "RunFolder",
    "RunFolderBusy",
    "validate_rows",
]

#: Columns describing one measurement. ``step`` is the index of the applied batch after
#: which the measurement was taken (``-1`` = before any edit); ``batch`` is the index of
#: the batch the case belongs to; ``suite`` names the metric suite ("probability",
#: "teacher_forced", "zsre", "multihop", "correlation", "health", "diagnostics").
RESULT_COLUMNS: tuple[str, ...] = (
    "run", "trial", "step", "batch", "case_id", "prompt_kind", "prompt_index",
    "suite", "metric", "value",
)

#: Configuration columns carried alongside every row.
CONFIG_COLUMNS: tuple[str, ...] = (
    "model", "dataset", "editor", "mode", "scheduler", "batch_size", "seed", "code_version",
)

_DTYPES: Mapping[str, str] = {
    "run": "string", "trial": "string", "step": "int64", "batch": "int64",
    "case_id": "string", "prompt_kind": "string", "prompt_index": "int64",
    "suite": "string", "metric": "string", "value": "float64",
    "model": "string", "dataset": "string", "editor": "string", "mode": "string",
    "scheduler": "string", "batch_size": "int64", "seed": "int64", "code_version": "string",
}


def validate_rows(rows: pd.DataFrame, *, source: str = "rows") -> pd.DataFrame:
    """Check ``rows`` has every result and config column and cast them to the schema.

    Extra columns are kept (after the schema's). Raises ``ValueError`` naming the
    missing columns or the column that does not cast.
    """
    missing = [c for c in (*RESULT_COLUMNS, *CONFIG_COLUMNS) if c not in rows.columns]
    if missing:
        raise ValueError(f"{source}: missing result columns {missing}")
    out = rows.copy()
    for col, dtype in _DTYPES.items():
        try:
            out[col] = out[col].astype(dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: column {col!r} does not cast to {dtype}: {exc}") from None
    extra = [c for c in out.columns if c not in _DTYPES]
    return out[[*RESULT_COLUMNS, *CONFIG_COLUMNS, *extra]].reset_index(drop=True)


log = logging.getLogger(__name__)


class RunFolderBusy(RuntimeError):
    """Another run is writing to this run folder."""


class RunFolder:
    """One experiment's output folder (see the module docstring for its layout)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    @property
    def schedules_dir(self) -> Path:
        return self.root / "schedules"

    # -- config -------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any], *, replace: bool = False) -> None:
        """Write ``config.json``; refuses to overwrite a different config unless
        ``replace``, so a resumed run cannot silently mix settings."""
        path = self.root / "config.json"
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        if path.exists() and not replace:
            old = json.loads(path.read_text(encoding="utf-8"))
            if old != json.loads(text):
                raise ValueError(
                    f"{path}: this run folder holds another configuration; use a new "
                    "output folder or delete this one"
                )
            return
        atomic_write_text(text + "\n", path)

    def read_config(self) -> dict[str, Any]:
        """The run's configuration."""
        path = self.root / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: not a run folder (no config.json)")
        return json.loads(path.read_text(encoding="utf-8"))

    def write_edits(self, requests: Sequence[EditRequest]) -> None:
        """Write ``edits.jsonl``."""
        atomic_write_text("".join(json.dumps(r.to_dict(), sort_keys=True) + "\n"
                                  for r in requests), self.root / "edits.jsonl")

    def read_edits(self) -> list[EditRequest]:
        """The run's edits (``edits.jsonl``)."""
        text = (self.root / "edits.jsonl").read_text(encoding="utf-8")
        return [EditRequest.from_dict(json.loads(line)) for line in text.splitlines() if line]

    def clear(self, names: Iterable[str]) -> None:
        """Remove the named files and the schedules and trials folders (a folder taken
        over by another configuration)."""
        for name in names:
            (self.root / name).unlink(missing_ok=True)
        for d in (self.trials_dir, self.schedules_dir):
            shutil.rmtree(d, ignore_errors=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock (``.lock``) for the block; raises :class:`RunFolderBusy`
        when another process holds it."""
        from filelock import FileLock, Timeout

        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / ".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunFolderBusy(f"{self.root}: another run is writing to this folder; wait "
                                f"for it to end or use another output folder") from None
        try:
            yield
        finally:
            lock.release()

    # -- trials -------------------------------------------------------------------
    def trial_path(self, trial: str) -> Path:
        return self.trials_dir / f"{trial}.parquet"

    def finished_trials(self) -> set[str]:
        """Names of trials whose rows are on disk; a file that does not read as parquet
        (empty, cut short) is renamed ``.broken`` and does not count."""
        if not self.trials_dir.is_dir():
            return set()
        import pyarrow.parquet as pq

        done = set()
        for p in self.trials_dir.glob("*.parquet"):
            if p.name.startswith("."):  # a trial being written
                continue
            try:
                pq.read_metadata(p)
            except Exception as exc:  # pyarrow raises several kinds for a damaged file
                log.warning("%s: not a whole parquet file (%s); the trial runs again", p, exc)
                os.replace(p, p.with_name(p.name + ".broken"))
                continue
            done.add(p.stem)
        return done

    def write_trial(self, trial: str, rows: pd.DataFrame, *,
                    schedule: pd.DataFrame | None = None) -> None:
        """Store one finished trial: its schedule first, then its rows (the rows file
        marks the trial as done)."""
        rows = validate_rows(rows, source=f"trial {trial}")
        if schedule is not None:
            atomic_write_parquet(schedule, self.schedules_dir / f"{trial}.parquet")
        atomic_write_parquet(rows, self.trial_path(trial))

    def read_results(self, trials: Iterable[str] | None = None) -> pd.DataFrame:
        """All finished trials' rows as one tidy table (empty with the schema if none)."""
        names = sorted(self.finished_trials() if trials is None else trials)
        frames = [pd.read_parquet(self.trial_path(t)) for t in names]
        if not frames:
            return validate_rows(pd.DataFrame({c: [] for c in _DTYPES}))
        return pd.concat(frames, ignore_index=True)

    def read_schedules(self) -> pd.DataFrame:
        """Every trial's schedule with a ``trial`` column."""
        frames = []
        for p in sorted(self.schedules_dir.glob("[!.]*.parquet")) if self.schedules_dir.is_dir() else []:
            frames.append(pd.read_parquet(p).assign(trial=p.stem))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def consolidate(self) -> Path:
        """Write ``results.parquet`` with every finished trial's rows; returns its path."""
        path = self.root / "results.parquet"
        atomic_write_parquet(self.read_results(), path)
        return path

    # -- log ------------------------------------------------------------------------
    def log(self, event: str, **fields: Any) -> None:
        """Append one JSON line to ``log.jsonl``."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "event": event, **fields},
                          default=str)
        with open(self.root / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
