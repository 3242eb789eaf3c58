"""Trials in worker processes: groups of trials taken from a queue by ``workers``
processes, each loading the model itself; the rows are those of one process.

Usage::

    from corredit.runner.parallel import run_parallel, work_groups
    run_parallel(runner, todo)        # runner.workers processes; shared inputs cached first
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, Sequence

from corredit.config import RunConfig, TrialSpec

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
    """Run ``todo`` of ``runner`` (a :class:`~corredit.runner.Runner`) in
    ``runner.workers`` processes that take :func:`work_groups` from a queue; the shared
    inputs (statistics, embeddings) are cached first, the edits are read from the run
    folder's ``edits.jsonl``."""
    import concurrent.futures as cf
    import multiprocessing

    inputs = runner.inputs
    if any(e.stats for e in runner.config.editors):
        inputs.stats()
    inputs.embeddings()
    groups = work_groups(inputs, todo)
    n = min(runner.workers, len(groups))
    bar = None
    if runner.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"trials ({n} workers)", unit="trial",
                   file=sys.stderr, dynamic_ncols=True)
    names = {t.name for t in todo}
    folder = runner.folder
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        queue = manager.Queue()
        for g in groups:
            queue.put([t.name for t in g])
        with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            futures = [pool.submit(_run_queue, runner.config.to_dict(), str(folder.root), queue)
                       for _ in range(n)]
            pending = set(futures)
            while pending:
                _, pending = cf.wait(pending, timeout=1.0)
                if bar is not None:
                    bar.update(len(folder.finished_trials() & names) - bar.n)
            if bar is not None:
                bar.close()
            for f in futures:
                f.result()  # a worker's error surfaces here


def _run_queue(config: Mapping[str, Any], out: str, queue: Any) -> list[str]:
    """Worker process: take groups of trial names from ``queue`` until it is empty and
    run them into ``out``."""
    import queue as queue_module

    import torch

    from corredit.results import RunFolder
    from corredit.runner.run import Runner

    cfg = RunConfig.from_dict(config, source=f"{out}/config.json")
    cfg.import_plugins()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    folder = RunFolder(out)
    runner = Runner(cfg, out, progress=False, selected=folder.read_edits(),
                    version=folder.read_config().get("code_version"))
    specs = {t.name: t for t in cfg.trials()}
    done: list[str] = []
    while True:
        try:
            group = queue.get_nowait()
        except queue_module.Empty:
            return done
        for name in group:
            runner.run_trial(specs[name])
            done.append(name)
        runner.inputs.forget_values()

