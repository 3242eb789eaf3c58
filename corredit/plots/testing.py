"""Synthetic results with known structure, for exercising the figures and the report
without running a model.

Usage::

    from corredit.plots.testing import synthetic_results, write_synthetic_run
    df = synthetic_results(seed=0)              # tidy rows in the corredit.results schema
    run_dir = write_synthetic_run("/tmp/run")   # a run folder written with RunFolder

Structure built in: an edit fails more often the more similar it is to the rest of its
batch (``P(ES=1) = 0.95 - 0.8 * max_sim``), edits sharing their subject with another edit of
the batch lose ``same_subject_penalty`` of success probability, and in sequential trials
an edit's ES probability decays with its age (``0.95 * exp(-age / 8)``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from corredit.atomic import atomic_write_text
from corredit.results import RunFolder

__all__ = ["tidy_frame", "synthetic_results", "synthetic_subjects", "write_synthetic_run",
           "synthetic_graph_edges"]

_CONFIG = {"model": "world", "dataset": "world", "code_version": "0.1.0"}
_PARAM = "transformer.h.3.mlp.c_proj.weight"


_DEFAULTS = {"run": "r", "trial": "t", "step": 0, "batch": 0, "case_id": "0",
             "prompt_kind": "rewrite", "prompt_index": 0, "suite": "probability", "metric": "ES",
             "value": 1.0, "model": "world", "dataset": "world", "editor": "rome",
             "mode": "batch", "scheduler": "random", "batch_size": 1, "seed": 0,
             "code_version": "0.1.0"}


def tidy_frame(records: Sequence[dict], **defaults) -> pd.DataFrame:
    """A results table from partial rows: every column of the schema not given in a
    record comes from ``defaults``, else from a fixed default (trial ``"t"``, editor
    ``"rome"``, suite ``"probability"``, metric ``"ES"``, step and batch 0, ...).

    Example: ``tidy_frame([{"case_id": "a", "value": 0.0}], editor="memit")``.
    """
    base = {**_DEFAULTS, **defaults}
    if not records:
        return pd.DataFrame(columns=list(base))
    return pd.DataFrame([{**base, **r} for r in records])


def _row(trial: dict, step: int, batch: int, case: str, kind: str, index: int, suite: str,
         metric: str, value: float) -> dict:
    return {**trial, "step": step, "batch": batch, "case_id": case, "prompt_kind": kind,
            "prompt_index": index, "suite": suite, "metric": metric, "value": float(value)}


def _batch_trial(rng: np.random.Generator, trial: dict, n_cases: int, batch_size: int,
                 embeddings: Sequence[str], penalty: float, n_prompts: int) -> list[dict]:
    rows: list[dict] = []
    subject = _subject_index(n_cases)
    idx = np.arange(n_cases)
    batch = idx // batch_size
    for b in np.unique(batch):
        members = np.flatnonzero(batch == b)
        sims = {e: rng.uniform(0.0, 1.0, len(members)) if batch_size > 1
                else np.full(len(members), np.nan) for e in embeddings}
        for k, i in enumerate(members):
            case = str(i)
            shared = int(np.sum(subject[members] == subject[i]) - 1)
            max_sim = sims[embeddings[0]][k]
            s = 0.0 if np.isnan(max_sim) else max_sim
            p_es = np.clip(0.95 - 0.8 * s - penalty * (shared > 0), 0.02, 0.98)
            p_ps = np.clip(0.8 - 0.6 * s - penalty * (shared > 0), 0.02, 0.98)
            p_ns = np.clip(0.9 - 0.2 * s, 0.02, 0.98)
            step = int(b)
            rows.append(_row(trial, step, step, case, "rewrite", 0, "probability", "ES",
                             rng.random() < p_es))
            for j in range(n_prompts):
                rows.append(_row(trial, step, step, case, "paraphrase", j, "probability", "PS",
                                 rng.random() < p_ps))
                rows.append(_row(trial, step, step, case, "neighborhood", j, "probability",
                                 "NS", rng.random() < p_ns))
            for e in embeddings:
                v = sims[e][k]
                rows.append(_row(trial, step, step, case, "case", 0, "correlation",
                                 f"max_sim:{e}", v))
                rows.append(_row(trial, step, step, case, "case", 0, "correlation",
                                 f"mean_sim:{e}", v / 2.0))
            rows.append(_row(trial, step, step, case, "case", 0, "correlation",
                             "same_subject_in_batch", shared))
    return rows


def _subject_index(n_cases: int) -> np.ndarray:
    """The first half of the cases come in pairs sharing a subject; the rest stand alone."""
    idx = np.arange(n_cases)
    return np.where(idx < n_cases // 2, idx // 2, idx)


def synthetic_subjects(n_cases: int = 40) -> pd.DataFrame:
    """``case_id`` and ``subject`` of the synthetic cases (pairs in the first half).

    Example: ``attach_subjects(synthetic_results(), synthetic_subjects())``.
    """
    return pd.DataFrame({"case_id": [str(i) for i in range(n_cases)],
                         "subject": [f"subject {s}" for s in _subject_index(n_cases)]})


def _sequential_trial(rng: np.random.Generator, trial: dict, n_cases: int) -> list[dict]:
    rows: list[dict] = []
    for step in range(n_cases):
        for b in range(step + 1):
            age = step - b
            p = 0.95 * np.exp(-age / 8.0)
            rows.append(_row(trial, step, b, str(b), "rewrite", 0, "probability", "ES",
                             rng.random() < p))
            if age == 0:
                rows.append(_row(trial, step, b, str(b), "paraphrase", 0, "probability", "PS",
                                 rng.random() < 0.7))
                rows.append(_row(trial, step, b, str(b), "neighborhood", 0, "probability", "NS",
                                 rng.random() < 0.9))
    return rows


def _health(trial: dict, n_steps: int) -> list[dict]:
    rows = [_row(trial, -1, -1, "", "model", 0, "health", "perplexity", 20.0)]
    for step in range(n_steps):
        rows.append(_row(trial, step, step, "", "model", 0, "health", "perplexity",
                         20.0 + 0.5 * step))
        rows.append(_row(trial, step, step, "", _PARAM, 0, "health", "norm_growth",
                         1.0 + 0.01 * step))
    return rows


def synthetic_results(*, editors: Sequence[str] = ("memit", "rome"),
                      schedulers: Sequence[str] = ("community", "random"),
                      batch_sizes: Sequence[int] = (4,), n_cases: int = 40,
                      sequential_cases: int = 0, embeddings: Sequence[str] = ("minilm",),
                      same_subject_penalty: float = 0.3, n_prompts: int = 2,
                      health: bool = True, seed: int = 0, run: str = "synthetic") -> pd.DataFrame:
    """Tidy rows for every editor x scheduler x batch size (mode ``batch``), plus one
    sequential trial (batch size 1) per editor when ``sequential_cases > 0``."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for editor in editors:
        for scheduler in schedulers:
            for bs in batch_sizes:
                name = f"{editor}-{scheduler}-b{bs}-s{seed}"
                trial = {"run": run, "trial": name, **_CONFIG, "editor": editor,
                         "mode": "batch", "scheduler": scheduler, "batch_size": bs,
                         "seed": seed}
                rows += _batch_trial(rng, trial, n_cases, bs, embeddings,
                                     same_subject_penalty, n_prompts)
                if health:
                    rows += _health(trial, int(np.ceil(n_cases / bs)))
        if sequential_cases > 0:
            name = f"{editor}-sequential-b1-s{seed}"
            trial = {"run": run, "trial": name, **_CONFIG, "editor": editor,
                     "mode": "sequential", "scheduler": "random", "batch_size": 1, "seed": seed}
            rows += _sequential_trial(rng, trial, sequential_cases)
            if health:
                rows += _health(trial, sequential_cases)
    return pd.DataFrame(rows)


def synthetic_graph_edges(n_cases: int = 40, *, n_communities: int = 4,
                          seed: int = 0) -> pd.DataFrame:
    """An edge list (``source``, ``target``, ``weight``) over case ids ``"0".."n-1"`` with
    ``n_communities`` dense blocks and a few weak edges between them."""
    rng = np.random.default_rng(seed)
    block = np.arange(n_cases) % n_communities
    edges = []
    for i in range(n_cases):
        for j in range(i + 1, n_cases):
            same = block[i] == block[j]
            if rng.random() < (0.5 if same else 0.03):
                edges.append((str(i), str(j), float(rng.uniform(0.6, 0.95) if same
                                                    else rng.uniform(0.3, 0.5))))
    return pd.DataFrame(edges, columns=["source", "target", "weight"])


def write_synthetic_run(root: str | os.PathLike[str], *, graph: bool = True,
                        **kwargs) -> Path:
    """Write :func:`synthetic_results` as a run folder (one trial file per trial, a
    config, ``edits.jsonl`` with each case's subject, optionally ``graph_edges.parquet``);
    returns the folder."""
    folder = RunFolder(root)
    df = synthetic_results(**kwargs)
    folder.write_config({"source": "corredit.plots.testing.synthetic_results",
                         **{k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}})
    for trial, rows in df.groupby("trial", sort=True):
        folder.write_trial(str(trial), rows)
    n_edits = max(kwargs.get("n_cases", 40), kwargs.get("sequential_cases", 0))
    atomic_write_text("".join(json.dumps(rec) + "\n" for rec in
                              synthetic_subjects(n_edits).to_dict("records")),
                      folder.root / "edits.jsonl")
    if graph:
        n = kwargs.get("n_cases", 40)
        folder.root.mkdir(parents=True, exist_ok=True)
        synthetic_graph_edges(n, seed=kwargs.get("seed", 0)).to_parquet(
            folder.root / "graph_edges.parquet", index=False)
    return folder.root
