"""The ``run``, ``report`` and ``demo`` subcommands: experiments from a TOML file.

Usage::

    corredit run CONFIG.toml --out DIR        # resumes: finished trials are not redone
    corredit run CONFIG.toml --out DIR --executor ray   # or slurm; [executor] in CONFIG
    corredit report RUN_DIR                   # RUN_DIR/report.md, report.html, figures/
    corredit demo --out DIR [--quick]         # the packaged demo, figures, report, summary

Heavy modules (torch, the editors) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``run``, ``report`` and ``demo`` subcommands."""
    run = subparsers.add_parser(
        "run", help="run an experiment described by a TOML file",
        description="Run every trial of CONFIG (editors x schedulers x batch sizes x seeds) "
                    "into DIR; a rerun resumes, skipping finished trials.")
    run.add_argument("config", help="the run's TOML file (see corredit/configs/demo.toml)")
    run.add_argument("--out", required=True, help="run folder (created; resumed if present)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--workers", type=int, default=None,
                     help="run trials in this many processes (same rows; default: "
                          "[executor] workers, else 1)")
    run.add_argument("--executor", default=None, metavar="NAME",
                     help="where trials run: local, ray or slurm (same rows; default: "
                          "[executor] name, else local); see 'corredit status RUN_DIR'")
    run.add_argument("--executor-config", default=None, metavar="FILE",
                     help="a TOML file whose [executor] table replaces CONFIG's (cluster "
                          "settings kept apart from the run; --executor still names it)")
    run.add_argument("--report", action="store_true",
                     help="also write figures and report.md / report.html")
    run.set_defaults(func=_run)

    report = subparsers.add_parser(
        "report", help="write figures and report.md / report.html of a run folder",
        description="Draw the figures the run supports into RUN_DIR/figures and write "
                    "RUN_DIR/report.md and RUN_DIR/report.html.")
    report.add_argument("run_dir", help="a run folder written by 'corredit run'")
    report.add_argument("--figures-dir", default=None,
                        help="use (or draw into) this folder instead of RUN_DIR/figures")
    report.set_defaults(func=_report)

    demo = subparsers.add_parser(
        "demo", help="the offline demo on the embedded world (results, figures, report)",
        description="Run the packaged demo (corredit/configs/demo.toml) on the embedded "
                    "world: correlated, random, decorrelated and same-subject batches "
                    "edited with MEMIT, ROME and FT; writes results, figures and the report "
                    "into DIR and prints the summary table.")
    demo.add_argument("--out", required=True, help="output folder (resumed if present)")
    demo.add_argument("--quick", action="store_true",
                      help="a reduced configuration (corredit/configs/demo-quick.toml)")
    demo.add_argument("--model", default="world",
                      help="the model's packaged demo: world (default) or smollm2-135m "
                           "(corredit/configs/demo-smollm2.toml, about 15 minutes on 2 cores)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--workers", type=int, default=None,
                      help="trial processes (default: 2 where there are 2 or more CPUs)")
    demo.set_defaults(func=_demo)


def _run(args: argparse.Namespace) -> int:
    from corredit.config import load_config
    from corredit.runner import Runner
    from corredit.runner.executors import TrialsFailed

    cfg = load_config(args.config)
    if args.executor_config:
        from corredit.runner.executors import load_executor

        cfg = cfg.replace(executor=load_executor(args.executor_config))
    started = time.perf_counter()
    try:
        folder = Runner(cfg, args.out, progress=False if args.no_progress else None,
                        workers=args.workers, executor=args.executor).run()
    except TrialsFailed as exc:
        print(f"corredit run: {exc}", file=sys.stderr)
        return 1
    df = folder.read_results()
    print(f"{len(cfg.trials())} trials, {len(df)} rows in {folder.root / 'results.parquet'} "
          f"({time.perf_counter() - started:.1f} s)")
    if args.report:
        from corredit.report import write_report

        md, html = write_report(folder.root)
        print(f"report: {md} and {html}")
    _print_summary(df)
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from corredit.report import write_report

    root = Path(args.run_dir)
    if not (root / "config.json").is_file() and not (root / "results.parquet").is_file():
        raise FileNotFoundError(f"{root}: not a run folder (no config.json or results.parquet)")
    md, html = write_report(root, figures_dir=args.figures_dir)
    print(f"wrote {md} and {html}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from corredit.demo import run_demo

    run_demo(args.out, quick=args.quick, model=args.model, progress=False if args.no_progress else None,
             workers=args.workers, stream=sys.stdout)
    return 0


def _print_summary(df: Any) -> None:
    from corredit.report import markdown_table, summary_table

    table = summary_table(df)
    if not table.empty:
        print(markdown_table(table))
