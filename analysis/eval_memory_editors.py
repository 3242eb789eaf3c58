"""GRACE and T-Patcher in sequential mode on the demo's world edits, through the runner.

Usage::

    python analysis/eval_memory_editors.py --out runs/memory-editors          # 64 demo edits
    python analysis/eval_memory_editors.py --out runs/memory-val --data-seed 1 \
        --grace '{"layer": 5, "eps": 3.0}' --editors grace     # a validation sample

The run is the packaged demo configuration (``corredit/configs/demo.toml``: people with
three facts each, subject-first phrasings) cut to ``--edits`` edits (a seeded sample,
``--data-seed``), edited one fact per step by each editor under each scheduler (``random``
order, and ``same_subject_together``, which puts a person's facts next to each other).
Editor settings are the per-model defaults of ``corredit/editors/defaults.toml`` plus the
JSON overrides given. Printed: ES / PS / NS / S x100 right after each edit
(``immediate``) and after the last edit (``final``), then the final scores split by
whether the edit's subject has other edits in the run (``shared``: the correlated
edits); ``--json`` writes the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EDITORS = ("grace", "t-patcher")


def config_table(*, edits: int, data_seed: int, editors: list[str], schedulers: list[str],
                 overrides: dict[str, dict], retention_points: int) -> dict:
    """The demo's configuration, reduced to sequential trials of the memory editors."""
    from corredit.demo import DEMO_CONFIG

    with open(DEMO_CONFIG, "rb") as fh:
        t = tomllib.load(fh)
    t["name"] = "memory-editors"
    t["data"] = {**t["data"], "max_edits": edits, "seed": data_seed}
    for key in ("embeddings", "graph", "health"):
        t.pop(key, None)
    t["graph"] = {"enabled": False}
    t["schedule"] = {"schedulers": schedulers, "batch_sizes": [1]}
    t["evaluate"] = {"suites": ["probability", "diagnostics"], "batch_size": 64,
                     "retention_points": retention_points}
    t["editors"] = [{"name": e, "mode": "sequential", "stats": False,
                     **({"hparams": overrides[e]} if overrides.get(e) else {})} for e in editors]
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder (resumes when it exists)")
    p.add_argument("--edits", type=int, default=64)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--editors", nargs="+", default=list(EDITORS), choices=EDITORS)
    p.add_argument("--schedulers", nargs="+", default=["random", "same_subject_together"])
    p.add_argument("--grace", default="{}", help="JSON hyperparameter overrides for GRACE")
    p.add_argument("--tpatcher", default="{}", help="JSON hyperparameter overrides for T-Patcher")
    p.add_argument("--retention-points", type=int, default=2)
    p.add_argument("--json", help="write the two tables here")
    args = p.parse_args(argv)

    from corredit.analysis.cases import attach_subjects, read_edit_subjects
    from corredit.analysis.tables import summary_table
    import pandas as pd

    from corredit.config import parse_config
    from corredit.runner import Runner

    overrides = {"grace": json.loads(args.grace), "t-patcher": json.loads(args.tpatcher)}
    cfg = parse_config(config_table(edits=args.edits, data_seed=args.data_seed,
                                    editors=args.editors, schedulers=args.schedulers,
                                    overrides=overrides, retention_points=args.retention_points),
                       source="eval_memory_editors")
    started = time.perf_counter()
    folder = Runner(cfg, Path(args.out), progress=False).run()
    df = folder.read_results()
    tables = {}
    for when in ("immediate", "final"):
        tab = summary_table(df, when=when).round(1)
        tables[when] = tab
        print(f"\n{when} (x100)\n{tab.to_string(index=False)}")
    print(f"\n{time.perf_counter() - started:.0f} s; results in {folder.root}")
    subjects = read_edit_subjects(folder.root / "edits.jsonl")
    shared = set(subjects["subject"][subjects["subject"].duplicated(keep=False)])
    cases = attach_subjects(df, subjects)
    parts = []
    for flag in (True, False):
        part = cases[cases["subject"].isin(shared) == flag]
        parts.append(summary_table(part, when="final").assign(shared=flag))
    split = pd.concat(parts, ignore_index=True).round(1)
    tables["final_by_shared_subject"] = split
    print(f"\nfinal, by subject with other edits in the run (x100)\n{split.to_string(index=False)}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: v.to_dict(orient="records") for k, v in tables.items()}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
