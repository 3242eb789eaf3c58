"""The experiment runner: a config's grid of trials into a run folder, one finished trial
at a time, resumable.

Usage::

    from corredit.runner import Runner, run_experiment
    df = run_experiment("corredit/configs/demo.toml", out="runs/demo")   # the tidy rows
    df = run_experiment(config, requests=reqs, handle=h)    # in memory, no folder kept
    Runner(config, "runs/x", workers=2).run()               # the RunFolder; same rows

Before anything is written, everything checkable is checked: registered names, the
device, the data, the model, every editor's hyperparameters on it and the text files
named. A run folder is locked while a run writes to it; a folder holding another
configuration is refused once it holds a finished trial, and reused before.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from corredit.config import RunConfig, TrialSpec, as_config
from corredit.config.sections import ExecutorConfig
from corredit.results import RunFolder
from corredit.runner.executors import Lease, TrialStates, resolve_executor
from corredit.runner.inputs import RunInputs
from corredit.runner.progress import progress_bar
from corredit.runner.trial import run_trial
from corredit.types import EditRequest

__all__ = ["Runner", "run_experiment", "code_version", "check_device"]

log = logging.getLogger(__name__)

#: Files of a run folder derived from its configuration (removed when a folder without
#: finished trials is reused for another configuration).
_DERIVED = ("edits.jsonl", "graph_edges.parquet", "known.parquet", "results.parquet")


def code_version() -> str:
    """The package version, plus the git commit of the checkout it runs from when there is
    one (``0.1.0+g1a2b3c4``, ``-dirty`` when files under ``corredit/`` are modified)."""
    import corredit

    version = corredit.__version__
    pkg = Path(corredit.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=pkg,
                                capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return version
        version += f"+g{commit.stdout.strip()}"
        status = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=pkg,
                                capture_output=True, text=True, timeout=5)
        if status.returncode == 0 and status.stdout.strip():
            version += "-dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def check_device(device: str | None) -> None:
    """Raise ``ValueError`` when ``device`` names an accelerator this machine lacks."""
    if device is None or device == "cpu":
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: {device!r} is not a device name ({exc})") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise ValueError(f"device: {device!r} is not available on this machine "
                             f"({n} CUDA device{'s' if n != 1 else ''}); use \"cpu\" or "
                             f"leave device out")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {device!r} is not available on this machine")


class Runner:
    """Runs a config (a :class:`~corredit.config.RunConfig`, a mapping or a TOML path)
    into the run folder ``out``. ``handle``: a loaded model instead of ``config.model``;
    ``requests``: edits instead of ``[data] source`` (the ``[data]`` filters apply);
    ``selected``: edits that already passed them; ``progress``: override
    ``config.progress``; ``workers``: trials in that many processes (the same rows);
    ``executor``: a name or table replacing ``config.executor`` (``"ray"``, ``"slurm"``:
    :mod:`corredit.runner.executors`; the same rows);
    ``version``: the ``code_version`` of the rows (default: this checkout's)."""

    def __init__(self, config: RunConfig | Mapping[str, Any] | str | os.PathLike[str],
                 out: str | os.PathLike[str], *, handle: Any = None,
                 requests: Sequence[EditRequest] | None = None,
                 selected: Sequence[EditRequest] | None = None,
                 progress: bool | None = None, workers: int | None = None,
                 executor: str | ExecutorConfig | None = None,
                 version: str | None = None) -> None:
        self.config = as_config(config)
        self.config.import_plugins()
        self.folder = RunFolder(out)
        self.progress = self.config.progress if progress is None else bool(progress)
        self.executor = resolve_executor(self.config.executor, executor, workers)
        self.workers = self.executor.workers
        self._own_model = handle is None  # workers can load the model themselves
        self._remote = self.executor.name != "local"
        if self._remote and not (self._own_model and requests is None):
            raise ValueError(f"executor {self.executor.name!r} runs trials on its workers, "
                             f"which load the model and edits themselves: pass neither "
                             f"handle nor requests, or use the local executor")
        self.states = TrialStates(self.folder)
        self.lease: Lease | None = None
        self.inputs = RunInputs(self.config, out, handle=handle, requests=requests,
                                selected=selected, progress=self.progress)
        self.code_version = version or code_version()
        self._suites: list[Any] | None = None

    def suites(self) -> list[Any]:
        """One instance of every configured suite (kept for the whole run)."""
        if self._suites is None:
            from corredit.evaluate.suite import get_suite

            self._suites = [get_suite(name)() for name in self.config.evaluate.suites]
        return self._suites

    # -- before the folder ---------------------------------------------------------------
    def check(self, *, model: bool = True) -> None:
        """Everything checkable before a file is written: names, device, text files, the
        data, the model, each editor's hyperparameters on it and what it needs beyond them
        (MEND's trained network); ``model=False``: not the device, model and editors, which
        a remote executor's worker checks."""
        from corredit.stats.sources import check_source

        cfg = self.config
        cfg.check_names()
        if model:
            check_device(cfg.device)
        if any(e.stats for e in cfg.editors):
            check_source(cfg.stats.corpus, "stats.corpus")
        if "health" in cfg.evaluate.suites:
            check_source(cfg.health.texts, "health.texts")
        self.inputs.raw_requests()
        if not model:
            return
        h = self.inputs.handle()
        for i, e in enumerate(cfg.editors):
            editor = self.inputs.editor(e)
            try:
                hp = editor.hparams_for(h)
            except (ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"editors[{i}].hparams: {exc}") from None
            try:    # what the editor writes; loads a trained part (MEND's network) first
                editor.declared_parameters(h, hp)
            except (ValueError, FileNotFoundError) as exc:
                raise ValueError(f"editors[{i}] ({e.column}): {exc}") from None

    # -- the folder ----------------------------------------------------------------------
    def write_config(self) -> None:
        """Write ``config.json`` (the config plus ``code_version``). A folder holding
        another configuration is refused when it holds a finished trial and taken over
        otherwise, except that a config adding seeds to the folder's (and changing nothing
        else) extends it: its trials are kept and the new seeds' trials run. A different
        code version is only logged."""
        record = {**_identity(self.config), "code_version": self.code_version}
        path = self.folder.root / "config.json"
        if path.exists():
            old = self.folder.read_config()
            old_version = old.pop("code_version", None)
            old = _with_defaults(old)
            new = _identity(self.config)
            if old == new:
                if old_version != self.code_version:
                    log.warning("%s: resuming a run started with code version %s under %s",
                                self.folder.root, old_version, self.code_version)
                return
            if self.folder.finished_trials():
                added = _added_seeds(old, new)
                if added is None:
                    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                    raise ValueError(
                        f"{path}: this run folder holds another configuration (differs in "
                        f"{', '.join(changed)}); use a new output folder or delete this one")
                log.warning("%s: adding seeds %s to the run's %s (its finished trials are kept)",
                            self.folder.root, added, old["seeds"])
                self.folder.log("seeds_added", seeds=added, code_version=self.code_version)
                (self.folder.root / "results.parquet").unlink(missing_ok=True)  # consolidated anew
            else:
                self.folder.clear(_DERIVED)
        self.folder.write_config(record, replace=True)

    def write_inputs(self) -> None:
        """The edits (``edits.jsonl``) and the correlation graph (``graph_edges.parquet``);
        other edits in a folder with finished trials are refused."""
        reqs = self.inputs.requests()
        old = self.folder.read_edits() if (self.folder.root / "edits.jsonl").exists() else None
        if old is not None and [r.to_dict() for r in old] != [r.to_dict() for r in reqs]:
            if self.folder.finished_trials():
                raise ValueError(f"{self.folder.root}: this run folder holds other edits; use "
                                 f"a new output folder or delete this one")
            old = None
        if old is None:
            self.folder.write_edits(reqs)
        name = self.config.graph_embedding
        path = self.folder.root / "graph_edges.parquet"
        if name is not None and not path.exists():
            from corredit.atomic import atomic_write_parquet
            from corredit.graph import knn_graph, threshold_graph, to_edge_frame

            X = self.inputs.embeddings()
            g = self.config.graph
            if g.threshold is not None:
                G = threshold_graph(reqs, X, threshold=g.threshold, on=name)
            else:
                G = knn_graph(reqs, X, k=max(1, min(g.k, len(reqs) - 1)), on=name,
                              mutual=g.mutual)
            atomic_write_parquet(to_edge_frame(G), path)

    # -- the run -------------------------------------------------------------------------
    def run(self) -> RunFolder:
        """Check, then run every unfinished trial and write ``results.parquet``; returns
        the folder."""
        import torch

        threads = torch.get_num_threads()
        if self.config.threads is not None:
            torch.set_num_threads(self.config.threads)
        try:
            self.check(model=not self._remote)
            self.folder.root.mkdir(parents=True, exist_ok=True)
            with self.folder.lock(), Lease.claim(self.folder, self.executor.name) as lease:
                self.lease, self.states = lease, TrialStates(self.folder, lease.token)
                return self._run()
        finally:
            torch.set_num_threads(threads)

    def _run(self) -> RunFolder:
        self.write_config()
        trials = self.config.trials()
        done = self.folder.finished_trials()
        todo = [t for t in trials if t.name not in done]
        self.folder.log("run_start", trials=len(trials), finished=len(trials) - len(todo),
                        code_version=self.code_version)
        started = time.perf_counter()
        if not self._remote:      # a remote executor prepares the inputs on a worker
            self.prepare(todo)
        if todo and (self._remote or self.workers > 1 and len(todo) > 1 and self._own_model):
            from corredit.runner.executors.driver import run_on_executor

            run_on_executor(self, todo)
        else:
            for spec in progress_bar(todo, enabled=self.progress, desc="trials", unit="trial"):
                self.run_trial(spec)
        path = self.folder.consolidate()
        self.folder.log("run_end", trials=len(trials), ran=len(todo),
                        seconds=round(time.perf_counter() - started, 3), results=str(path))
        return self.folder

    def prepare(self, todo: Sequence[TrialSpec]) -> None:
        """Write the edits and the graph (:meth:`write_inputs`); warn of ``todo``'s
        batches larger than their edits."""
        self.write_inputs()
        self._warn_oversized(todo)

    def _warn_oversized(self, todo: Sequence[TrialSpec]) -> None:
        for t in todo:
            n = len(self.inputs.subset(t.editor))
            if t.batch_size > n:
                log.warning("trial %s: batch size %d exceeds its %d edits; it runs as one "
                            "batch of %d (its rows say batch_size=%d)", t.name, t.batch_size,
                            n, n, n)
                self.folder.log("batch_size_capped", trial=t.name, batch_size=t.batch_size,
                                n_edits=n)

    def run_trial(self, spec: TrialSpec) -> pd.DataFrame:
        """Run one trial, write it to the run folder and return its rows; its state file
        says running, then failed (with the error) or nothing once its rows are written."""
        self.states.started(spec.name)
        try:
            schedule = self.inputs.schedule(spec.editor, spec.scheduler, spec.batch_size,
                                            spec.seed)
            self.folder.log("trial_start", trial=spec.name, n_edits=schedule.n_edits,
                            n_steps=schedule.n_batches, mode=spec.editor.mode, pid=os.getpid())
            outcome = run_trial(self.inputs, spec, self.suites(),
                                code_version=self.code_version, progress=self.progress)
        except Exception as exc:
            self.states.failed(spec.name, exc)
            raise
        self.states.check()       # a worker of a driver that no longer owns the folder
        self.folder.write_trial(spec.name, outcome.rows, schedule=schedule.to_frame())
        self.states.finished(spec.name)
        self.folder.log("trial_end", trial=spec.name, pid=os.getpid(), **outcome.log_fields())
        return outcome.rows


def run_experiment(config: RunConfig | Mapping[str, Any] | str | os.PathLike[str],
                   out: str | os.PathLike[str] | None = None, *,
                   requests: Sequence[EditRequest] | None = None, handle: Any = None,
                   progress: bool | None = None, workers: int | None = None,
                   executor: str | ExecutorConfig | None = None) -> pd.DataFrame:
    """Run ``config`` (a :class:`~corredit.config.RunConfig`, a mapping or a TOML path)
    and return its tidy results table (:mod:`corredit.results`).

    ``out``: the run folder to write (a rerun resumes there); None keeps no folder.
    ``requests``: edits in memory instead of ``[data] source`` (the ``[data]`` filters
    apply); ``handle``: a loaded model instead of ``config.model``; ``workers``: trials in
    that many processes, ``executor``: ``"ray"``, ``"slurm"`` or a table (the same rows).

    Example: ``run_experiment("demo.toml", out="runs/demo")``;
    ``run_experiment(cfg, requests=reqs, handle=h)``.
    """
    if out is None:
        with tempfile.TemporaryDirectory(prefix="corredit-run-") as tmp:
            return run_experiment(config, tmp, requests=requests, handle=handle,
                                  progress=progress, workers=workers, executor=executor)
    folder = Runner(config, out, handle=handle, requests=requests, progress=progress,
                    workers=workers, executor=executor).run()
    return folder.read_results()


def _with_defaults(record: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the options added since it was written at their defaults, so
    that a folder written before an option existed still resumes; unreadable records are
    compared as stored."""
    try:
        return _identity(RunConfig.from_dict(record, source="config.json"))
    except (ValueError, TypeError, KeyError):
        return record


def _added_seeds(old: dict[str, Any], new: dict[str, Any]) -> list[Any] | None:
    """The seeds ``new`` adds to ``old`` when that is their only difference (the old
    seeds kept, in their order); None otherwise."""
    old_seeds, new_seeds = old.get("seeds"), new.get("seeds")
    if not isinstance(old_seeds, list) or not isinstance(new_seeds, list):
        return None
    if new_seeds[: len(old_seeds)] != old_seeds or len(new_seeds) == len(old_seeds):
        return None
    if {k: v for k, v in old.items() if k != "seeds"} != {k: v for k, v in new.items() if k != "seeds"}:
        return None
    return new_seeds[len(old_seeds):]


def _identity(config: RunConfig) -> dict[str, Any]:
    """What a run computes: its config as a dict without ``executor`` (how it runs), so
    that a folder started on one executor resumes on another."""
    d = config.to_dict()
    d.pop("executor", None)
    return d
