"""Who may write to a run folder, and what each trial is doing: the driver's lease and
the trials' state files.

Usage::

    from corredit.runner.executors.state import Lease, TrialStates, run_status
    with folder.lock(), Lease.claim(folder, "ray") as lease:   # the driver
        states = TrialStates(folder, lease.token)              # given to every worker
        states.started(name); ...; states.check(); folder.write_trial(...)
        states.finished(name)                                  # or states.failed(name, exc)
    run_status("runs/x").finished                              # what `corredit status` shows

The driver holds the folder's lock and writes ``driver.json`` with a fresh token; a
worker writes a trial (or its state) only while ``driver.json`` holds the token of the
driver that started it, so workers left over from an earlier driver (a killed driver's
SLURM jobs) write nothing once another driver owns the folder or the driver ended.
Trial states live in ``trials/.state/<trial>.json`` (``running`` or ``failed`` with the
error); a finished trial is its rows file, so its state file is removed.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from corredit.atomic import atomic_write_text
from corredit.results import RunFolder

__all__ = ["Lease", "TrialStates", "RunTakenOver", "RunStatus", "run_status", "driver_alive",
           "DRIVER_FILE"]

#: The driver's lease, in the run folder.
DRIVER_FILE = "driver.json"


class RunTakenOver(RuntimeError):
    """The driver that started this worker no longer owns the run folder."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class Lease:
    """A driver's claim on a run folder: a ``token`` its workers carry, the ``executor``
    and where the driver runs."""

    token: str
    executor: str
    host: str
    pid: int
    started: str

    @classmethod
    @contextmanager
    def claim(cls, folder: RunFolder, executor: str) -> Iterator["Lease"]:
        """Write ``driver.json`` for the block (hold ``folder.lock()`` around it); it is
        removed at the end unless another driver has replaced it."""
        lease = cls(uuid.uuid4().hex, executor, socket.gethostname(), os.getpid(), _now())
        path = folder.root / DRIVER_FILE
        atomic_write_text(json.dumps(asdict(lease), indent=2) + "\n", path)
        try:
            yield lease
        finally:
            current = cls.read(folder)
            if current is not None and current.token == lease.token:
                path.unlink(missing_ok=True)

    @classmethod
    def read(cls, folder: RunFolder) -> "Lease | None":
        """The lease in ``driver.json`` (None when there is none or it is unreadable)."""
        try:
            d = json.loads((folder.root / DRIVER_FILE).read_text(encoding="utf-8"))
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None


class TrialStates:
    """Trial state files of ``folder`` written on behalf of the driver whose lease has
    ``token`` (None: this process holds the folder's lock itself)."""

    def __init__(self, folder: RunFolder, token: str | None = None) -> None:
        self.folder = folder
        self.token = token
        self.dir = folder.trials_dir / ".state"

    def owns(self) -> bool:
        """Whether the driver of ``token`` still owns the folder."""
        if self.token is None:
            return True
        lease = Lease.read(self.folder)
        return lease is not None and lease.token == self.token

    def check(self) -> None:
        """Raise :class:`RunTakenOver` unless :meth:`owns`."""
        if not self.owns():
            raise RunTakenOver(f"{self.folder.root}: the run that started this worker no "
                               f"longer owns the folder; its result is dropped")

    def _write(self, trial: str, record: dict[str, Any]) -> None:
        if self.owns():
            record = {"trial": trial, "host": socket.gethostname(), "pid": os.getpid(),
                      "time": _now(), **record}
            atomic_write_text(json.dumps(record, indent=1) + "\n", self.dir / f"{trial}.json")

    def started(self, trial: str) -> None:
        """``trial`` is running here."""
        self._write(trial, {"state": "running"})

    def failed(self, trial: str, error: BaseException | str) -> None:
        """``trial`` failed with ``error`` (an exception keeps its traceback's tail)."""
        from corredit.runner.executors.base import describe_error

        if isinstance(error, BaseException):
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            record = {"error": describe_error(error), "traceback": tb[-4000:]}
        else:
            record = {"error": str(error)}
        self._write(trial, {"state": "failed", **record})

    def finished(self, trial: str) -> None:
        """``trial``'s rows are written: drop its state file."""
        (self.dir / f"{trial}.json").unlink(missing_ok=True)

    def read(self) -> dict[str, dict[str, Any]]:
        """Every readable state file, by trial name."""
        out: dict[str, dict[str, Any]] = {}
        for p in sorted(self.dir.glob("[!.]*.json")) if self.dir.is_dir() else []:
            try:
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return out


def driver_alive(folder: RunFolder) -> bool:
    """Whether a run holds ``folder``'s lock now (tried without waiting)."""
    from filelock import FileLock, Timeout

    if not (folder.root / ".lock").exists():
        return False
    lock = FileLock(str(folder.root / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@dataclass
class RunStatus:
    """Where a run folder stands: its trials by state (``failed`` and ``interrupted``
    map names to their state records), the driver's lease and whether it runs."""

    root: str
    trials: list[str]
    finished: list[str] = field(default_factory=list)
    running: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupted: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    driver: Lease | None = None
    driver_alive: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = asdict(self)
        d["driver"] = None if self.driver is None else asdict(self.driver)
        return d


def run_status(root: str | os.PathLike[str]) -> RunStatus:
    """The status of the run folder ``root``: a trial is finished (its rows are written),
    running (a state file says so and a driver holds the lock), interrupted (it was
    running when its driver stopped), failed (with the error) or pending."""
    from corredit.config import RunConfig

    folder = RunFolder(root)
    record = {k: v for k, v in folder.read_config().items() if k != "code_version"}
    cfg = RunConfig.from_dict(record, source=str(folder.root / "config.json"))
    names = [t.name for t in cfg.trials()]
    alive = driver_alive(folder)
    status = RunStatus(str(folder.root), names, driver=Lease.read(folder), driver_alive=alive)
    done = folder.finished_trials()
    states = TrialStates(folder).read()
    for name in names:
        record = states.get(name, {})
        if name in done:
            status.finished.append(name)
        elif record.get("state") == "failed":
            status.failed[name] = record
        elif record.get("state") == "running":
            (status.running if alive else status.interrupted)[name] = record
        else:
            status.pending.append(name)
    return status
