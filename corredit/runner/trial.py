"""One trial: schedule -> (edit -> suites)* -> restore, as tidy rows.

Usage::

    from corredit.runner.trial import run_trial
    rows = run_trial(inputs, spec, suites, code_version="0.1.0")   # the model is restored

The trial's edits (all the run's, or its editor's ``subset``) are scheduled by its
scheduler, batch size and seed; its editor applies the batches in its mode (``batch``:
each batch on the unedited model; ``sequential`` / ``sequential-batch``: one after
another); after each step every suite may add rows (:mod:`corredit.evaluate.suite`).
The edited parameters are put back from a snapshot, and a checksum of them must equal
the one taken before the trial; what an editor added (hooks, modules, memory) is
removed at the same points, and the model's hook counts must be those before the trial.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import pandas as pd

from corredit.config import TrialSpec
from corredit.evaluate.suite import MeasurePoint, Suite, TrialContext
from corredit.results import RESULT_COLUMNS
from corredit.runner.inputs import RunInputs
from corredit.runner.progress import progress_bar

__all__ = ["run_trial", "retention_checkpoints", "TrialOutcome"]

_ROW_COLUMNS = ("step", "batch", "case_id", "prompt_kind", "prompt_index", "metric", "value")


def retention_checkpoints(n_steps: int, *, every: int = 0, points: int = 4) -> list[int]:
    """Steps (0-based) at which a sequential trial re-scores every earlier case: every
    ``every`` steps when ``every > 0``, else ``points`` evenly spaced steps; the last
    step always.

    Example: ``retention_checkpoints(10, every=4)`` -> ``[3, 7, 9]``;
    ``retention_checkpoints(10, points=2)`` -> ``[4, 9]``.
    """
    if n_steps <= 0:
        return []
    if every > 0:
        steps = set(range(every - 1, n_steps, every))
    elif points > 0:
        steps = {int(math.ceil((k + 1) * n_steps / points)) - 1 for k in range(points)}
    else:
        steps = set()
    steps.add(n_steps - 1)
    return sorted(s for s in steps if 0 <= s < n_steps)


class TrialOutcome:
    """A finished trial: its ``rows``, its ``schedule`` and timings for the log."""

    def __init__(self, rows: pd.DataFrame, schedule: Any, seconds: float,
                 edit_seconds: float) -> None:
        self.rows, self.schedule = rows, schedule
        self.seconds, self.edit_seconds = seconds, edit_seconds

    def log_fields(self) -> dict[str, Any]:
        """What the ``trial_end`` event records."""
        return {"seconds": round(self.seconds, 3), "edit_seconds": round(self.edit_seconds, 3),
                "n_edits": self.schedule.n_edits, "n_steps": self.schedule.n_batches,
                "n_rows": len(self.rows), **_summary(self.rows)}


def run_trial(inputs: RunInputs, spec: TrialSpec, suites: Sequence[Suite], *,
              code_version: str, progress: bool = False) -> TrialOutcome:
    """Run one trial on ``inputs.handle()`` and restore the model; returns its outcome."""
    import torch

    from corredit.editors.checks import hook_counts
    from corredit.models import param_checksum, restore, snapshot

    h = inputs.handle()
    idx = inputs.subset(spec.editor)
    all_reqs = inputs.requests()
    stats = inputs.stats() if spec.editor.stats else None
    schedule = inputs.schedule(spec.editor, spec.scheduler, spec.batch_size, spec.seed)
    editor = inputs.editor(spec.editor)
    names = list(editor.declared_parameters(h))
    original = snapshot(h.model, names)
    checksum = param_checksum(h.model, names)
    hooks = hook_counts(h.model)
    values = inputs.shared_values(spec.editor, editor, spec.seed, spec.batch_size)
    ctx = TrialContext(inputs=inputs, spec=spec, handle=h, requests=[all_reqs[i] for i in idx],
                       schedule=schedule, batch_of=schedule.batch_of(),
                       embeddings={k: X[idx] for k, X in inputs.embeddings().items()},
                       param_names=names, original=original, config=inputs.config)
    n_steps, mode = schedule.n_batches, spec.editor.mode
    started = time.perf_counter()
    torch.manual_seed(spec.seed)
    frames: list[pd.DataFrame | None] = [_tag(s.before(ctx), s) for s in suites]
    evaluate = inputs.config.evaluate
    checkpoints = set(range(n_steps)) if mode == "batch" else set(retention_checkpoints(
        n_steps, every=evaluate.retention_every, points=evaluate.retention_points))
    n_check, edit_seconds = 0, 0.0

    def check_restored(step: int | None) -> None:
        restore(h.model, original)
        editor.reset(h)            # its additions and any state carried between edits
        if hook_counts(h.model) != hooks:
            raise RuntimeError(f"trial {spec.name}: editor {spec.editor.name!r} left hooks on the "
                               f"model ({hook_counts(h.model)} != {hooks} before the trial)")
        now = param_checksum(h.model, names)
        if now != checksum:
            where = "at the end" if step is None else f"after step {step}"
            raise RuntimeError(f"trial {spec.name}: the edited parameters {names} differ from "
                               f"their values before the trial {where} (checksum {now} != "
                               f"{checksum}); restore is not bit-exact")

    try:
        for step in progress_bar(range(n_steps), enabled=progress, desc=spec.name,
                                 unit="step", leave=False):
            batch = schedule.batches[step]
            t0 = time.perf_counter()
            result = editor.apply(
                h, ctx.cases(batch), stats=stats, seed=spec.seed,
                precomputed=None if values is None else values.select(list(batch)))
            edit_seconds += time.perf_counter() - t0
            frames += [_tag(s.after_edit(ctx, step, batch, result), s) for s in suites]
            if step in checkpoints:
                cases = tuple(batch) if mode == "batch" else tuple(
                    i for b in schedule.batches[:step + 1] for i in b)
                point = MeasurePoint(step, cases, True, n_check, step == n_steps - 1)
                n_check += 1
            else:
                point = MeasurePoint(step, tuple(batch), False, n_check, False)
            frames += [_tag(s.measure(ctx, point), s) for s in suites]
            if mode == "batch":
                check_restored(step)
    finally:
        restore(h.model, original)
        editor.reset(h)
    check_restored(None)
    rows = assemble_rows(inputs.config, spec, frames, code_version=code_version,
                         n_edits=schedule.n_edits)
    return TrialOutcome(rows, schedule, time.perf_counter() - started, edit_seconds)


def assemble_rows(config: Any, spec: TrialSpec, frames: Sequence[pd.DataFrame | None], *,
                  code_version: str, n_edits: int | None = None) -> pd.DataFrame:
    """The suites' frames as one table with the result and configuration columns;
    ``batch_size`` is the one that ran (at most ``n_edits``)."""
    parts = [f for f in frames if f is not None and len(f)]
    if parts:
        rows = pd.concat(parts, ignore_index=True)
    else:
        rows = pd.DataFrame({c: [] for c in (*_ROW_COLUMNS, "suite")})
    for col, default in (("prompt_kind", ""), ("prompt_index", 0), ("case_id", "")):
        if col not in rows.columns:
            rows[col] = default
        rows[col] = rows[col].fillna(default)
    missing = [c for c in (*_ROW_COLUMNS, "suite") if c not in rows.columns]
    if missing:
        raise ValueError(f"trial {spec.name}: suite rows lack columns {missing}")
    rows = rows.assign(run=config.name, trial=spec.name, model=config.model,
                       dataset=config.data.dataset_name, editor=spec.editor.column,
                       mode=spec.editor.mode, scheduler=spec.scheduler,
                       batch_size=min(spec.batch_size, n_edits or spec.batch_size), seed=spec.seed,
                       code_version=code_version)
    rows["case_id"] = rows["case_id"].astype(str)
    rows["value"] = rows["value"].astype(float)
    return rows[[*RESULT_COLUMNS, "model", "dataset", "editor", "mode", "scheduler",
                 "batch_size", "seed", "code_version"]]


def _tag(frame: pd.DataFrame | None, suite: Suite) -> pd.DataFrame | None:
    if frame is None or not len(frame):
        return None
    if "suite" not in frame.columns:
        return frame.assign(suite=suite.name)
    return frame.assign(suite=frame["suite"].fillna(suite.name))


def _summary(rows: pd.DataFrame) -> dict[str, float]:
    """Mean ES / PS / NS x100 of each case at its last measurement (for the log)."""
    p = rows[(rows["suite"] == "probability") & (rows["step"] >= 0)
             & rows["metric"].isin(["ES", "PS", "NS"])]
    if p.empty:
        return {}
    last = p.groupby(["case_id", "metric"])["step"].transform("max")
    p = p[p["step"] == last]
    per_case = p.groupby(["metric", "case_id"])["value"].mean()
    return {m: round(float(per_case[m].mean() * 100), 2) for m in ("ES", "PS", "NS")
            if m in per_case.index.get_level_values(0)}
