"""The notebook API: edit, score and run experiments on objects in memory.

Usage::

    import corredit
    h = corredit.load("world")                                  # any corredit.models.load name
    reqs = corredit.load_world().requests(n=32, seed=0)
    result = corredit.edit(h, reqs, "memit", corpus="world")    # statistics computed or reused
    rows = corredit.score(h, reqs, result=result)               # the runner's tidy rows
    corredit.restore(h, result)                                 # bit-exact
    df = corredit.run_experiment("run.toml", requests=reqs, handle=h)   # a whole grid

Every function here takes what a researcher already has in a notebook (a loaded model,
a list of :class:`~corredit.types.EditRequest`) and returns rows that every
:mod:`corredit.plots` function accepts.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import pandas as pd

from corredit.types import EditRequest

__all__ = ["edit", "score", "restore", "run_experiment"]


def edit(h: Any, requests: Sequence[EditRequest], editor: str = "memit", *,
         stats: Any = None, corpus: Any = None, mode: str = "batch",
         hparams: Mapping[str, Any] | None = None, seed: int = 0,
         max_tokens: int | None = None, cache_dir: str | os.PathLike[str] | None = None
         ) -> Any:
    """Edit ``h`` in place with ``requests`` using the registered ``editor``; returns its
    :class:`~corredit.editors.EditResult` (mode ``"batch"``: one batch) or a list of them
    (mode ``"sequential"``: one request after another).

    Hyperparameters are the per-model defaults with ``hparams`` on top. Editors that
    need second moments of the MLP keys get ``stats`` (``{layer: SecondMoment}``) or, from
    ``corpus`` (a :mod:`corredit.stats.sources` name such as ``"world"``, or a corpus
    object), statistics of ``max_tokens`` tokens (default: a run's ``[stats]``) computed
    once and then read from the cache (``cache_dir``, default the cache root).
    """
    import torch

    from corredit.editors import get_editor

    if mode not in ("batch", "sequential"):
        raise ValueError(f"mode must be 'batch' or 'sequential', got {mode!r}")
    requests = list(requests)
    if not requests:
        raise ValueError("no requests to edit")
    if stats is None and corpus is not None:
        stats = _cached_stats(corpus, max_tokens=max_tokens, cache_dir=cache_dir)
    ed = get_editor(editor)(dict(hparams) if hparams else None)
    torch.manual_seed(seed)
    if mode == "batch":
        return ed.apply(h, requests, stats=stats, seed=seed)
    return ed.edit(h, requests, mode="sequential", stats=stats, seed=seed)


def _cached_stats(corpus: Any, *, max_tokens: int | None,
                  cache_dir: str | os.PathLike[str] | None) -> Any:
    """``stats(h, layers)`` computing second moments through the statistics cache."""
    from pathlib import Path

    from corredit.config import StatsConfig
    from corredit.paths import cache_root
    from corredit.stats import StatsCache
    from corredit.stats.sources import make_corpus

    cfg = StatsConfig()
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    cache = StatsCache(root / "stats", batch_size=cfg.batch_size, max_length=cfg.max_length,
                       progress=False)

    def stats(h: Any, layers: Sequence[int]) -> Any:
        source = make_corpus(corpus, handle=h) if isinstance(corpus, str) else corpus
        return cache.get(h, sorted(int(x) for x in layers), source,
                         max_tokens or cfg.max_tokens)

    return stats


def score(h: Any, requests: Sequence[EditRequest], *, result: Any = None,
          suites: Sequence[str] = ("probability",), eval_batch_size: int = 64,
          **columns: Any) -> pd.DataFrame:
    """Tidy rows (:mod:`corredit.results` schema) of the model ``h`` on ``requests``:
    every case-scoring suite in ``suites`` (``probability``: ES / PS / NS ...), scored
    ``eval_batch_size`` prompts at a time.

    With ``result`` (what :func:`edit` returned) the rows are those of one edited batch
    (step 0, its editor and mode); without, of the unedited model (step -1). ``columns``
    set any configuration column (``scheduler="decorrelated"``, ``run=...``), so rows of
    several calls concatenate into one table for :mod:`corredit.plots`.
    """
    from corredit.evaluate.suite import CaseSuite, get_suite
    from corredit.results import CONFIG_COLUMNS, RESULT_COLUMNS, validate_rows

    requests = list(requests)
    results = result if isinstance(result, list) else [result] if result is not None else []
    frames = []
    for name in suites:
        cls = get_suite(name)
        if not issubclass(cls, CaseSuite):
            raise ValueError(f"suite {name!r} measures a whole trial; score() runs the suites "
                             f"that score cases (e.g. 'probability')")
        frame = cls.score(h, requests, batch_size=eval_batch_size)
        frames.append(frame if "suite" in frame.columns else frame.assign(suite=name))
    rows = pd.concat(frames, ignore_index=True)
    editor = results[0].editor if results else "none"
    mode = "batch" if len(results) <= 1 else "sequential"
    defaults = {"run": "notebook", "step": len(results) - 1 if mode == "sequential" else
                (0 if results else -1), "batch": 0, "model": str(getattr(h, "name", "model")),
                "dataset": "requests", "editor": editor, "mode": mode,
                "scheduler": "input_order", "batch_size": len(requests), "seed": 0,
                "code_version": _version()}
    unknown = sorted(set(columns) - set(defaults) - {"trial"})
    if unknown:
        raise ValueError(f"score(): unknown columns {unknown}; known: "
                         f"{sorted(set(defaults) | {'trial'})}")
    values = {**defaults, **columns}
    values.setdefault("trial", f"{values['editor']}-{values['scheduler']}-"
                               f"b{values['batch_size']}-s{values['seed']}")
    rows = rows.assign(**values)
    return validate_rows(rows[[*RESULT_COLUMNS, *CONFIG_COLUMNS]], source="score()")


def _version() -> str:
    import corredit

    return corredit.__version__


def restore(h: Any, result: Any) -> None:
    """Put back the parameters ``result`` (what :func:`edit` returned) changed, bit for
    bit."""
    from corredit.models import restore as restore_params

    first = result[0] if isinstance(result, list) else result
    if first.snapshot is None:
        raise ValueError("this EditResult holds no snapshot of the parameters before the edit")
    restore_params(h.model, first.snapshot)


def run_experiment(config: Any, out: str | os.PathLike[str] | None = None, *,
                   requests: Sequence[EditRequest] | None = None, handle: Any = None,
                   progress: bool | None = None, workers: int = 1) -> pd.DataFrame:
    """Run an experiment grid (:func:`corredit.runner.run_experiment`): ``config`` a
    :class:`~corredit.config.RunConfig`, a dict or a TOML path; returns the tidy rows."""
    from corredit.runner import run_experiment as run

    return run(config, out, requests=requests, handle=handle, progress=progress,
               workers=workers)
