"""Evaluation suites: hooks a trial calls on the model, each returning tidy rows.

Usage::

    from corredit.evaluate.suite import SUITES, Suite, register_case_suite

    @SUITES.register("my_suite")
    class MySuite(Suite):
        def measure(self, ctx, point):          # the model after step point.step
            return pd.DataFrame({...})          # case_id, prompt_kind, prompt_index, metric, value

    register_case_suite("zsre", score_zsre)     # score_zsre(h, requests, batch_size=64) -> rows

``[evaluate] suites`` of a run names the suites it uses; the built-ins (``probability``,
``correlation``, ``health``, ``diagnostics``) are in :mod:`corredit.evaluate.suites`.
Row conventions (``step``, ``batch``) are those of :mod:`corredit.results`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from corredit.registry import Registry
from corredit.types import EditRequest

__all__ = ["SUITES", "Suite", "CaseSuite", "MeasurePoint", "TrialContext",
           "register_case_suite", "get_suite"]

#: Evaluation suites by name; ``[evaluate] suites`` lists the ones a run uses.
SUITES: Registry[type["Suite"]] = Registry(
    "suite", hint="register one with @corredit.evaluate.SUITES.register(name) or "
                  "corredit.evaluate.register_case_suite(name, fn)")


@dataclass(frozen=True)
class MeasurePoint:
    """One measurement of a trial: the model after step ``step``; ``cases`` are the
    request indices to score; ``checkpoint`` is True where the whole model is measured
    (every step in mode batch, the retention checkpoints otherwise), ``index`` counts the
    checkpoints so far (0-based), ``last`` marks the trial's last step."""

    step: int
    cases: tuple[int, ...]
    checkpoint: bool
    index: int
    last: bool


@dataclass
class TrialContext:
    """What a suite may read during one trial (the model ``handle`` is in the state the
    hook describes): ``inputs`` is the run's :class:`~corredit.runner.RunInputs` (all the
    run's ``requests()``, ``heldout_windows()``), ``spec`` the trial's
    :class:`~corredit.config.TrialSpec`, ``config`` the :class:`~corredit.config.RunConfig`;
    ``requests`` are the trial's edits, the indices of ``schedule`` and ``embeddings``
    rows refer to them."""

    inputs: Any
    spec: Any
    handle: Any
    requests: list[EditRequest]
    schedule: Any
    batch_of: np.ndarray
    embeddings: Mapping[str, np.ndarray]
    param_names: list[str]
    original: Mapping[str, Any]
    config: Any

    def __post_init__(self) -> None:
        self.case_index = {r.case_id: i for i, r in enumerate(self.requests)}

    def cases(self, indices: Iterable[int]) -> list[EditRequest]:
        """The requests at ``indices``."""
        return [self.requests[i] for i in indices]

    def rows(self, frame: pd.DataFrame, *, step: int, batch: Any = None) -> pd.DataFrame:
        """``frame`` with ``step`` set and ``batch`` from each row's case (or the given
        value)."""
        out = frame.copy()
        out["step"] = step
        if batch is None:
            index = self.case_index
            out["batch"] = [int(self.batch_of[index[c]]) for c in out["case_id"]]
        else:
            out["batch"] = batch
        return out


class Suite:
    """An evaluation suite: hooks the runner calls during a trial, each returning tidy
    rows (``case_id, prompt_kind, prompt_index, metric, value`` plus ``step`` and
    ``batch``; ``suite`` defaults to the suite's name) or None.

    ``before`` runs on the unedited model (rows at step -1), ``after_edit`` right after a
    batch is applied (with its :class:`~corredit.editors.EditResult`), ``measure`` at each
    :class:`MeasurePoint`. A suite instance lives for one run; state on it is allowed.
    """

    name: str = ""

    def before(self, ctx: TrialContext) -> pd.DataFrame | None:
        return None

    def after_edit(self, ctx: TrialContext, step: int, batch: Sequence[int],
                   result: Any) -> pd.DataFrame | None:
        return None

    def measure(self, ctx: TrialContext, point: MeasurePoint) -> pd.DataFrame | None:
        return None


class CaseSuite(Suite):
    """A suite from a function ``score(h, requests, batch_size=...) -> rows`` (case_id,
    prompt_kind, prompt_index, metric, value): the trial's cases are scored at every
    measurement point and, with ``pre_edit``, on the unedited model (computed once per
    run for all its edits and shared by its trials)."""

    score: Callable[..., pd.DataFrame]

    def __init__(self) -> None:
        self._pre: pd.DataFrame | None = None

    def _score(self, ctx: TrialContext, requests: Sequence[EditRequest]) -> pd.DataFrame:
        cfg = ctx.config.evaluate
        return type(self).score(ctx.handle, list(requests), batch_size=cfg.batch_size)

    def before(self, ctx: TrialContext) -> pd.DataFrame | None:
        if not ctx.config.evaluate.pre_edit:
            return None
        if self._pre is None:  # every trial starts from the same unedited model
            self._pre = self._score(ctx, ctx.inputs.requests())
        mine = self._pre[self._pre["case_id"].astype(str).isin(ctx.case_index)]
        return ctx.rows(mine.reset_index(drop=True), step=-1)

    def measure(self, ctx: TrialContext, point: MeasurePoint) -> pd.DataFrame | None:
        if not point.cases:
            return None
        return ctx.rows(self._score(ctx, ctx.cases(point.cases)), step=point.step)


def register_case_suite(name: str, score: Callable[..., pd.DataFrame], *,
                        replace: bool = False) -> type[CaseSuite]:
    """Register a :class:`CaseSuite` scoring cases with ``score``; returns its class."""
    cls = type(f"{name.title().replace('_', '')}Suite", (CaseSuite,),
               {"name": name, "score": staticmethod(score)})
    SUITES.add(name, cls, replace=replace)
    return cls


def get_suite(name: str) -> type[Suite]:
    """The suite class registered as ``name``."""
    return SUITES.get(name)
