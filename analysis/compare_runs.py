"""Two run folders over the same edits, or two editors of one run, compared case by case:
ES / PS / NS in A and in B, and B − A as a paired difference with a 95% interval that
resamples whole subjects.

Usage::

    python analysis/compare_runs.py runs/real-smollm2 runs/real-smollm2-model-corpus
    python analysis/compare_runs.py A B --metrics ES PS --when final --json out.json
    python analysis/compare_runs.py runs/family-world --editors memit memit-merge

Two runs: cases are matched on (editor label, mode, scheduler, batch size, seed, case
id). Two editors of one run: on (scheduler, batch size, seed, case id). A case present
on one side only is counted and left out of the differences, never dropped silently.
Scores are ×100.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

import pandas as pd

from corredit.analysis.bootstrap import bootstrap_ci
from corredit.analysis.cases import SCORE_METRICS, case_scores, case_units
from corredit.plots.rundata import read_run

__all__ = ["compare_runs", "compare_editors", "main"]

KEYS = ("editor", "mode", "scheduler", "batch_size", "seed", "case_id")


def _cases(run_dir: str, metrics: Sequence[str], when: str) -> pd.DataFrame:
    results = read_run(run_dir).results
    t = case_scores(results, when=when, metrics=metrics)
    t["subject"] = case_units(t)[0]          # the resampling unit: subject, else case
    return t[[*KEYS, "subject", *metrics]]


def _paired(a: pd.DataFrame, b: pd.DataFrame, on: Sequence[str], by: Sequence[str],
            metrics: Sequence[str], n_boot: int, seed: int) -> tuple[list[dict], dict]:
    both = a.merge(b, on=[*on, "subject"], how="outer", suffixes=("_a", "_b"), indicator=True)
    unmatched = {side: int((both["_merge"] == name).sum())
                 for side, name in (("only_a", "left_only"), ("only_b", "right_only"))}
    both = both[both["_merge"] == "both"]
    rows = []
    for key, g in both.groupby(list(by), dropna=False):
        row = dict(zip(by, key))
        row["cases"] = int(len(g))
        row["subjects"] = int(g["subject"].nunique())
        for m in metrics:
            diff = 100 * (g[f"{m}_b"] - g[f"{m}_a"])
            mean, lo, hi = bootstrap_ci(diff, clusters=g["subject"], n_boot=n_boot, seed=seed)
            row[m] = {"a": round(100 * float(g[f"{m}_a"].mean()), 1),
                      "b": round(100 * float(g[f"{m}_b"].mean()), 1),
                      "b_minus_a": round(mean, 1), "lo": round(lo, 1), "hi": round(hi, 1)}
        rows.append(row)
    return rows, unmatched


def compare_runs(run_a: str, run_b: str, *, metrics: Sequence[str] = SCORE_METRICS,
                 when: str = "immediate", n_boot: int = 2000, seed: int = 0) -> dict:
    """``{"rows": [...], "unmatched": {...}}``: per editor (and mode, scheduler, batch
    size), the mean of each metric in A and in B and the paired B − A with its interval."""
    rows, unmatched = _paired(_cases(run_a, metrics, when), _cases(run_b, metrics, when), KEYS,
                              ("editor", "mode", "scheduler", "batch_size"), metrics, n_boot, seed)
    return {"a": run_a, "b": run_b, "when": when, "rows": rows, "unmatched": unmatched}


def compare_editors(run: str, editor_a: str, editor_b: str, *,
                    metrics: Sequence[str] = SCORE_METRICS, when: str = "immediate",
                    n_boot: int = 2000, seed: int = 0) -> dict:
    """As :func:`compare_runs`, for editor labels ``editor_a`` and ``editor_b`` of one run,
    per scheduler and batch size."""
    t = _cases(run, metrics, when)
    on = ("scheduler", "batch_size", "seed", "case_id")
    sides = []
    for label in (editor_a, editor_b):
        side = t[t["editor"] == label]
        if side.empty:
            raise ValueError(f"{run}: no cases of editor {label!r} (editors: {sorted(t['editor'].unique())})")
        sides.append(side.drop(columns=["editor", "mode"]))
    rows, unmatched = _paired(*sides, on, ("scheduler", "batch_size"), metrics, n_boot, seed)
    for row in rows:
        row.update(editor=f"{editor_b} - {editor_a}", mode="")
    return {"a": editor_a, "b": editor_b, "run": run, "when": when, "rows": rows, "unmatched": unmatched}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b", nargs="?", default=None)
    parser.add_argument("--editors", nargs=2, metavar=("A", "B"), default=None,
                        help="compare these two editor labels of one run (RUN_A)")
    parser.add_argument("--metrics", nargs="+", default=list(SCORE_METRICS))
    parser.add_argument("--when", choices=["immediate", "final"], default="immediate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the comparison here")
    args = parser.parse_args(argv)
    if (args.run_b is None) == (args.editors is None):
        parser.error("give two runs, or one run and --editors A B")
    if args.editors:
        out = compare_editors(args.run_a, *args.editors, metrics=args.metrics, when=args.when, seed=args.seed)
        a, b = args.editors
    else:
        out = compare_runs(args.run_a, args.run_b, metrics=args.metrics, when=args.when, seed=args.seed)
        a, b = args.run_a, args.run_b
    print(f"A = {a}   B = {b}   ({args.when}; unmatched cases: {out['unmatched']})")
    for row in out["rows"]:
        cells = "   ".join(f"{m} {row[m]['a']} -> {row[m]['b']} ({row[m]['b_minus_a']:+.1f}, "
                           f"{row[m]['lo']:+.1f} to {row[m]['hi']:+.1f})" for m in args.metrics)
        print(f"{row['editor']} {row['mode']} {row['scheduler']} b{row['batch_size']}, "
              f"{row['cases']} cases / {row['subjects']} subjects:   {cells}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
