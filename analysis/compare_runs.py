"""Two run folders over the same edits, compared case by case: each editor's ES / PS / NS
in run A and in run B, and B − A as a paired difference with a 95% interval that
resamples whole subjects.

Usage::

    python analysis/compare_runs.py runs/real-smollm2 runs/real-smollm2-model-corpus
    python analysis/compare_runs.py A B --metrics ES PS --when final --json out.json

Cases are matched on (editor label, mode, scheduler, batch size, seed, case id); a case
present in one run only is reported and left out of the differences, never dropped
silently. Scores are ×100.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

import pandas as pd

from corredit.analysis.bootstrap import bootstrap_ci
from corredit.analysis.cases import SCORE_METRICS, case_scores
from corredit.plots.rundata import read_run

__all__ = ["compare_runs", "main"]

KEYS = ("editor", "mode", "scheduler", "batch_size", "seed", "case_id")


def _cases(run_dir: str, metrics: Sequence[str], when: str) -> pd.DataFrame:
    results = read_run(run_dir).results
    t = case_scores(results, when=when, metrics=metrics)
    if "subject" not in t.columns:
        t["subject"] = t["case_id"]
    return t[[*KEYS, "subject", *metrics]]


def compare_runs(run_a: str, run_b: str, *, metrics: Sequence[str] = SCORE_METRICS,
                 when: str = "immediate", n_boot: int = 2000, seed: int = 0) -> dict:
    """``{"rows": [...], "unmatched": {...}}``: per editor (and mode, scheduler, batch
    size), the mean of each metric in A and in B and the paired B − A with its interval."""
    a = _cases(run_a, metrics, when)
    b = _cases(run_b, metrics, when)
    both = a.merge(b, on=[*KEYS, "subject"], how="outer", suffixes=("_a", "_b"), indicator=True)
    unmatched = {side: int((both["_merge"] == name).sum())
                 for side, name in (("only_a", "left_only"), ("only_b", "right_only"))}
    both = both[both["_merge"] == "both"]
    rows = []
    for key, g in both.groupby(["editor", "mode", "scheduler", "batch_size"], dropna=False):
        row = dict(zip(("editor", "mode", "scheduler", "batch_size"), key))
        row["cases"] = int(len(g))
        row["subjects"] = int(g["subject"].nunique())
        for m in metrics:
            diff = 100 * (g[f"{m}_b"] - g[f"{m}_a"])
            mean, lo, hi = bootstrap_ci(diff, clusters=g["subject"], n_boot=n_boot, seed=seed)
            row[m] = {"a": round(100 * float(g[f"{m}_a"].mean()), 1),
                      "b": round(100 * float(g[f"{m}_b"].mean()), 1),
                      "b_minus_a": round(mean, 1), "lo": round(lo, 1), "hi": round(hi, 1)}
        rows.append(row)
    return {"a": run_a, "b": run_b, "when": when, "rows": rows, "unmatched": unmatched}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--metrics", nargs="+", default=list(SCORE_METRICS))
    parser.add_argument("--when", choices=["immediate", "final"], default="immediate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the comparison here")
    args = parser.parse_args(argv)
    out = compare_runs(args.run_a, args.run_b, metrics=args.metrics, when=args.when, seed=args.seed)
    print(f"A = {args.run_a}   B = {args.run_b}   ({args.when}; unmatched cases: {out['unmatched']})")
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
