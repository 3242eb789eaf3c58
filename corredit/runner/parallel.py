"""Trials in worker processes: groups of trials taken as they come free by ``workers``
processes, each loading the model itself; the rows are those of one process.

Usage::

    from corredit.runner.parallel import run_parallel, work_groups
    run_parallel(runner, todo)        # runner.workers processes; shared inputs cached first
    work_groups(runner.inputs, todo)  # the units of the local and slurm executors
"""

from __future__ import annotations

from typing import Any, Sequence

from corredit.config import TrialSpec

__all__ = ["run_parallel", "work_groups"]


def work_groups(inputs: Any, todo: Sequence[TrialSpec]) -> list[list[TrialSpec]]:
    """``todo`` as groups of trials to run in one process, the likely longest first:
    the batch-mode trials of an editor and seed that share value vectors form one
    group (the vectors are optimised once per group), every other trial is its own.
    Rough cost per edit: an edit of the evolving model and its scoring in sequential
    modes 4, a shared value vector 1 plus 0.2 per trial, an independent batch 0.5."""
    groups: dict[Any, list[TrialSpec]] = {}
    weight: dict[Any, float] = {}
    for t in todo:
        n = len(inputs.subset(t.editor))
        shared = inputs.shares_values(t.editor, inputs.editor(t.editor), t.batch_size)
        key = (t.editor.column, t.seed) if shared else t.name
        groups.setdefault(key, []).append(t)
        if shared:
            weight[key] = weight.get(key, float(n)) + 0.2 * n
        else:
            weight[key] = (0.5 if t.editor.mode == "batch" else 4.0) * n
    return [groups[k] for k in sorted(groups, key=lambda k: -weight[k])]


def run_parallel(runner: Any, todo: list[TrialSpec]) -> None:
    """Run ``todo`` of ``runner`` (a :class:`~corredit.runner.Runner` inside its ``run()``)
    in ``runner.workers`` processes that take :func:`work_groups` as they come free; the
    shared inputs (statistics, embeddings) are cached first, the edits are read from the
    run folder's ``edits.jsonl`` (the ``local`` executor,
    :mod:`corredit.runner.executors.local`)."""
    from corredit.runner.executors.driver import run_on_executor

    run_on_executor(runner, todo)
