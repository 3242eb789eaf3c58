"""The demo: the packaged run on the embedded world, its figures, report and summary.

Usage::

    from corredit.demo import run_demo, demo_config, DEMO_CONFIG
    res = run_demo("runs/demo")                 # or quick=True for the reduced CI version
    res.summary                                 # the summary table (scores x100)
    res.score_difference                        # same-subject minus other-subject scores
    res.scheduler_differences                   # each scheduler minus decorrelated, paired
    res.seconds, res.figures, res.report

    corredit demo --out runs/demo [--quick]      # the same from the command line
    corredit demo --model smollm2-135m --out runs/demo-smollm2   # on a real model
    corredit run corredit/configs/demo.toml --out runs/demo   # the run alone

The demo's configuration is the packaged ``corredit/configs/demo.toml`` (``--quick``:
``demo-quick.toml``): a few hundred world edits of subjects that each carry several facts
in subject-first phrasings, scheduled as correlated, random, decorrelated and
same-subject batches at two batch sizes, edited by MEMIT (batch), ROME (sequential) and
FT (batch). Other models have their own packaged demo (:data:`DEMO_CONFIGS`): a reduced
version of that model's study configuration (``configs/study-<model>.toml``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd

from corredit.config import RunConfig, load_config

__all__ = ["CONFIG_DIR", "DEMO_CONFIG", "QUICK_CONFIG", "DEMO_CONFIGS", "DemoResult",
           "demo_config", "run_demo", "demo_text", "default_workers"]

#: The packaged example configurations.
CONFIG_DIR = Path(__file__).resolve().with_name("configs")
DEMO_CONFIG = CONFIG_DIR / "demo.toml"
QUICK_CONFIG = CONFIG_DIR / "demo-quick.toml"
#: The packaged demo of each model that has one: ``model -> (demo, quick demo or None)``.
DEMO_CONFIGS: dict[str, tuple[Path, Path | None]] = {
    "world": (DEMO_CONFIG, QUICK_CONFIG),
    "smollm2-135m": (CONFIG_DIR / "demo-smollm2.toml", None),
}


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` produced."""

    root: Path
    seconds: float
    results: pd.DataFrame
    summary: pd.DataFrame
    score_difference: pd.DataFrame
    scheduler_differences: pd.DataFrame
    figures: list[Path]
    report: tuple[Path, Path]


def demo_config(quick: bool = False, model: str = "world") -> RunConfig:
    """The demo's configuration on ``model`` (a key of :data:`DEMO_CONFIGS`; the reduced
    one with ``quick``)."""
    if model not in DEMO_CONFIGS:
        raise ValueError(f"no packaged demo for model {model!r}; demos exist for "
                         f"{', '.join(sorted(DEMO_CONFIGS))} (any model runs with "
                         f"'corredit run CONFIG')")
    full, reduced = DEMO_CONFIGS[model]
    if quick and reduced is None:
        raise ValueError(f"the {model} demo has no --quick version: it is already reduced")
    return load_config(reduced if quick else full)


def _score_difference(df: pd.DataFrame) -> pd.DataFrame:
    from corredit.analysis.contrasts import score_difference

    try:
        return score_difference(df, metrics=["ES", "PS", "S"])
    except ValueError:
        return pd.DataFrame()


def _scheduler_differences(df: pd.DataFrame) -> pd.DataFrame:
    from corredit.analysis.contrasts import scheduler_differences

    try:
        return scheduler_differences(df, metrics=["ES", "PS", "NS"])
    except (ValueError, KeyError):
        return pd.DataFrame()


def demo_text(res: DemoResult) -> str:
    """The demo's console summary: the summary table, the paired correlated minus
    decorrelated contrast of every batch-mode editor, the Score Difference (within
    scheduler x batch size strata), the files and time; intervals resample subjects."""
    from corredit.report import markdown_table

    lines = [f"corredit demo: {res.root}", "", "Summary (probability suite, scores x100, "
             "after all edits; mode batch: after the case's own batch):", ""]
    lines.append(markdown_table(res.summary) if not res.summary.empty else "(no scores)")
    pairs = res.scheduler_differences
    if not pairs.empty:
        es = pairs[(pairs["metric"] == "ES") & (pairs["scheduler"] == "correlated")]
        if not es.empty:
            shown = es.assign(ci=[f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(es["lo"], es["hi"])])
            keys = [c for c in ("editor", "batch_size") if c in shown.columns]
            shown = shown[[*keys, "score", "reference_score", "diff", "ci", "n_units"]].rename(
                columns={"score": "ES correlated", "reference_score": "ES decorrelated",
                         "diff": "difference", "ci": "95% CI", "n_units": "subjects"})
            lines += ["", "Efficacy (ES) in correlated minus decorrelated batches, paired on the "
                          "same edits (interval: subjects resampled):", "", markdown_table(shown)]
    sd = res.score_difference
    if not sd.empty:
        shown = sd.assign(ci=[f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(sd["lo"], sd["hi"])])
        shown = shown[["editor", "metric", "shared", "alone", "diff", "ci", "n_shared",
                       "n_alone"]].rename(columns={"shared": "same-subject",
                                                   "alone": "other-subject", "diff": "SD",
                                                   "ci": "95% CI"})
        lines += ["", "Score Difference (edits sharing their subject with another edit of "
                      "the batch minus the others; points):", "", markdown_table(shown)]
    lines += ["", f"results: {res.root / 'results.parquet'}",
              f"figures: {len(res.figures)} PNG in {res.root / 'figures'}",
              f"report:  {res.report[0]}", f"time:    {res.seconds:.0f} s"]
    return "\n".join(lines)


def default_workers() -> int:
    """Trial processes for the demo: 2 where the machine has 2 or more CPUs, else 1."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def run_demo(out: str | os.PathLike[str], *, quick: bool = False, model: str = "world",
             progress: bool | None = None, workers: int | None = None,
             stream: TextIO | None = sys.stdout) -> DemoResult:
    """Run the demo of ``model`` into ``out``: results, ``figures/``, ``report.md`` /
    ``report.html``; print :func:`demo_text` to ``stream`` (None: print nothing).
    ``workers``: trial processes (default :func:`default_workers`)."""
    from corredit.plots import make_all_figures, read_run, summary_table
    from corredit.report import write_report
    from corredit.runner import Runner

    started = time.perf_counter()
    cfg = demo_config(quick, model)
    folder = Runner(cfg, out, progress=progress,
                    workers=default_workers() if workers is None else workers).run()
    df = read_run(folder.root).results          # with each case's subject (edits.jsonl)
    figures = make_all_figures(folder.root, folder.root / "figures", formats=("png",))
    report = write_report(folder.root, figures_dir=folder.root / "figures")
    res = DemoResult(root=folder.root, seconds=time.perf_counter() - started, results=df,
                     summary=summary_table(df), score_difference=_score_difference(df),
                     scheduler_differences=_scheduler_differences(df),
                     figures=figures, report=report)
    if stream is not None:
        print(demo_text(res), file=stream)
    return res
