"""The built-in evaluation suites, registered in :data:`corredit.evaluate.suite.SUITES`.

Usage::

    from corredit.evaluate import SUITES
    SUITES.names()      # ['correlation', 'diagnostics', 'health', 'probability', ...]

- ``probability``: ES / PS / NS ... of every case (:func:`corredit.evaluate.score_probability`).
- ``correlation``: each case's largest and mean similarity to the rest of its batch.
- ``health``: held-out perplexity and norm growth of the edited matrices.
- ``diagnostics``: what each :class:`~corredit.editors.EditResult` reports.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from corredit.evaluate.health import token_perplexity
from corredit.evaluate.probability import score_probability
from corredit.evaluate.suite import SUITES, MeasurePoint, Suite, TrialContext, register_case_suite

__all__ = ["CorrelationSuite", "HealthSuite", "DiagnosticsSuite"]


register_case_suite("probability", score_probability)


@SUITES.register("correlation")
class CorrelationSuite(Suite):
    """Per case, against the other edits of its batch: ``max_sim:<embedding>`` and
    ``mean_sim:<embedding>`` (cosine; NaN for a batch of one) for every embedding of the
    run, and ``same_subject_in_batch``."""

    name = "correlation"

    def after_edit(self, ctx: TrialContext, step: int, batch: Sequence[int],
                   result: Any) -> pd.DataFrame:
        idx = np.asarray(batch, dtype=np.int64)
        case_ids = [ctx.requests[i].case_id for i in idx]
        records: list[tuple[str, str, float]] = []
        for name, X in ctx.embeddings.items():
            if len(idx) > 1:
                S = X[idx] @ X[idx].T
                np.fill_diagonal(S, np.nan)
                max_sim = np.nanmax(S, axis=1)
                mean_sim = np.nanmean(S, axis=1)
            else:
                max_sim = mean_sim = np.full(len(idx), np.nan)
            records += [(c, f"max_sim:{name}", float(v)) for c, v in zip(case_ids, max_sim)]
            records += [(c, f"mean_sim:{name}", float(v)) for c, v in zip(case_ids, mean_sim)]
        subjects = [ctx.requests[i].subject for i in idx]
        counts = pd.Series(subjects).value_counts()
        records += [(c, "same_subject_in_batch", float(counts[s] - 1))
                    for c, s in zip(case_ids, subjects)]
        frame = pd.DataFrame(records, columns=["case_id", "metric", "value"])
        frame["prompt_kind"] = "case"
        frame["prompt_index"] = 0
        return ctx.rows(frame, step=step, batch=step)


@SUITES.register("health")
class HealthSuite(Suite):
    """Model health: ``perplexity`` on held-out text before any edit and at checkpoints
    (every ``[health] every``-th, and the last), and ``norm_growth`` of every edited
    matrix after each step (``||W|| / ||W_orig||``, prompt_kind = parameter name)."""

    name = "health"

    def __init__(self) -> None:
        self._before: float | None = None
        self._norms: dict[str, float] = {}

    def _ppl(self, ctx: TrialContext) -> float:
        cfg = ctx.config.health
        return token_perplexity(ctx.handle, ctx.inputs.heldout_windows(), batch_size=cfg.batch_size)

    @staticmethod
    def _frame(records: list[tuple[str, str, float]], step: int, batch: int) -> pd.DataFrame:
        frame = pd.DataFrame(records, columns=["prompt_kind", "metric", "value"])
        frame["case_id"] = ""
        frame["prompt_index"] = 0
        frame["step"] = step
        frame["batch"] = batch
        return frame

    def before(self, ctx: TrialContext) -> pd.DataFrame:
        if self._before is None:
            self._before = self._ppl(ctx)
        return self._frame([("model", "perplexity", self._before)], -1, -1)

    def after_edit(self, ctx: TrialContext, step: int, batch: Sequence[int],
                   result: Any) -> pd.DataFrame:
        params = dict(ctx.handle.model.named_parameters())
        records = []
        for name in ctx.param_names:
            if name not in self._norms:
                self._norms[name] = float(ctx.original[name].double().norm())
            now = float(params[name].detach().double().norm())
            records.append((name, "norm_growth", now / max(self._norms[name], 1e-30)))
        return self._frame(records, step, step)

    def measure(self, ctx: TrialContext, point: MeasurePoint) -> pd.DataFrame | None:
        every = ctx.config.health.every
        if not point.checkpoint or not (point.last or point.index % every == 0):
            return None
        return self._frame([("model", "perplexity", self._ppl(ctx))], point.step, point.step)


#: Per-case diagnostics renamed to the shared names of the row conventions.
_DIAGNOSTIC_NAMES = {"v_loss": "loss", "ft_loss": "loss"}


def _is_number(x: Any) -> bool:
    return isinstance(x, (bool, int, float, np.integer, np.floating, np.bool_))


@SUITES.register("diagnostics")
class DiagnosticsSuite(Suite):
    """Rows from each :class:`~corredit.editors.EditResult`: per-case lists (``loss``,
    ``delta_norm``, ...) as case rows, per-parameter numbers (``update_norm``, ...) with
    prompt_kind = parameter name, and plain numbers with prompt_kind ``"edit"``."""

    name = "diagnostics"

    def after_edit(self, ctx: TrialContext, step: int, batch: Sequence[int],
                   result: Any) -> pd.DataFrame | None:
        diag = dict(getattr(result, "diagnostics", {}) or {})
        case_ids = [str(c) for c in diag.get("case_id", getattr(result, "case_ids", []))]
        n = len(case_ids)
        per_case: list[tuple[str, str, str, float]] = []
        other: list[tuple[str, str, str, float]] = []
        for key, value in diag.items():
            if key == "case_id" or "history" in key:
                continue
            metric = _DIAGNOSTIC_NAMES.get(key, key)
            if isinstance(value, (list, tuple)) and len(value) == n and n > 0 \
                    and all(_is_number(v) for v in value):
                per_case += [(c, "case", metric, float(v)) for c, v in zip(case_ids, value)]
            elif isinstance(value, Mapping) and value and all(_is_number(v) for v in value.values()):
                other += [("", str(k), metric, float(v)) for k, v in value.items()]
            elif _is_number(value):
                other.append(("", "edit", metric, float(value)))
        if not per_case and not other:
            return None
        frame = pd.DataFrame(per_case + other,
                             columns=["case_id", "prompt_kind", "metric", "value"])
        frame["prompt_index"] = 0
        frame["step"] = step
        frame["batch"] = step
        return frame
