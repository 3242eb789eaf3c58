"""The Score Difference of a run with and without the edits that conflict: several edits of
one subject and one relation with different new objects (CounterFact gives Saint
Petersburg five twin cities), which no editor can all make true in the same prompt.

Usage::

    python analysis/sd_without_conflicts.py runs/families-smollm2
    python analysis/sd_without_conflicts.py runs/families-smollm2 --metrics ES PS NS

Prints, per editor and metric, the Score Difference (edits sharing their subject with
others in the batch minus the rest, within scheduler x batch size strata, 95% intervals
resampling whole subjects; :func:`corredit.analysis.score_difference`) over all edits and
over the edits outside such groups. The left-out edits still count as batch-mates of
the rest, so a remaining edit of Saint Petersburg stays "shared".
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from corredit.analysis import score_difference
    from corredit.data import conflict_pairs
    from corredit.plots.rundata import read_run
    from corredit.results import RunFolder

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run folder written by 'corredit run'")
    p.add_argument("--metrics", nargs="+", default=["ES", "PS"])
    args = p.parse_args(argv)
    df = read_run(args.run).results           # with each case's subject: the resampling unit
    edits = RunFolder(args.run).read_edits()
    conflicts = {str(r.case_id) for pair in conflict_pairs(edits) for r in pair}
    print(f"{args.run}: {len(edits)} edits, {len(conflicts)} of them in groups of one subject "
          f"and one relation with other new objects")
    cols = ["editor", "metric", "shared", "alone", "diff", "lo", "hi", "n_shared", "n_alone"]
    for label, rows in (("all edits", df),
                        ("without them", df[~df["case_id"].astype(str).isin(conflicts)])):
        sd = score_difference(rows, metrics=args.metrics)
        print(f"\n{label}:\n{sd[cols].round(1).to_string(index=False)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
