"""The ``forecast`` subcommand: what a MEMIT-family batch will leave unfit, before it runs,
and how well that predicts the edits a finished run saw fail.

Usage::

    corredit forecast DATA --model world --editor memit --batch-size 32 --out fc.parquet \\
        --out-layers fc_layers.csv            # per edit / per (batch, layer); prints batches
    corredit forecast DATA --model M --schedule schedule.parquet --stats-corpus wiki.txt
    corredit forecast --run runs/demo --out auc.csv      # ROC-AUC next to the run's measures
    corredit forecast --run runs/demo --values           # also with the optimised changes

With ``--run`` every finished batch-mode trial of a MEMIT-family editor is forecast on
the unedited model with the run's edits, schedules, statistics (through the cache) and
hyperparameters (``--hparams`` overrides them, for a run made under other defaults).
The per-edit measures join the run's correlation rows as ``forecast:<measure>`` and
their ROC-AUC for predicting a failed edit (ES < 0.5) is computed as for the within-batch
similarities (:func:`corredit.analysis.interference_auc`: pairs compared within scheduler
x batch size, subjects resampled), next to the pooled AUC and, where the run recorded
MEMIT's ``target_miss``, its Spearman correlation with the forecast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["register", "forecast_run_rows", "forecast_auc_table"]

MEASURES = ("unfit", "unfit_norm", "cross", "unfit_alone")
VALUE_MEASURES = ("unfit_actual", "unfit_along")


def register(subparsers: Any) -> None:
    """Add the ``forecast`` subcommand."""
    p = subparsers.add_parser(
        "forecast", help="forecast what a MEMIT-family batch leaves unfit (per edit, per batch)",
        description="Per edit, the predicted share of its change that the batch solve leaves "
                    "unfit and its strongest interferers; per batch and layer, the "
                    "conditioning of G = K^T (lam C)^-1 K. With --run, the ROC-AUC of the "
                    "forecast for the failed edits of a finished run.")
    p.add_argument("data", nargs="?", default=None, help="edit set (a file or a folder)")
    p.add_argument("--run", default=None, help="a finished run folder instead of DATA")
    p.add_argument("--format", default=None, help="data format (default: detected)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad record")
    p.add_argument("--model", default=None, help="model folder or name ('world' = embedded)")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: automatic)")
    p.add_argument("--editor", default="memit", help="MEMIT-family editor (default: memit)")
    p.add_argument("--hparams", default=None, help="JSON hyperparameter overrides")
    p.add_argument("--batch-size", type=int, default=None,
                   help="consecutive batches of this size in data order (default: one batch)")
    p.add_argument("--schedule", default=None,
                   help="batches from a schedule parquet (columns batch, case_id)")
    p.add_argument("--seed", type=int, default=0, help="context-template seed (the editor's)")
    p.add_argument("--top-k", type=int, default=3, help="interferers listed per edit")
    p.add_argument("--stats-corpus", default=None,
                   help="statistics corpus: 'world', a text file, hf:... (default for "
                        "--model world: world)")
    p.add_argument("--stats-tokens", type=int, default=None,
                   help="statistics tokens (default: 20 x key size)")
    p.add_argument("--values", action="store_true",
                   help="also optimise the values and forecast the actual residuals")
    p.add_argument("--n-boot", type=int, default=1000, help="--run: bootstrap replicates")
    p.add_argument("--out", default=None,
                   help="per-edit rows (DATA) or the AUC table (--run): .parquet or .csv")
    p.add_argument("--out-layers", default=None, help="DATA: per (batch, layer) rows")
    p.add_argument("--out-rows", default=None, help="--run: the forecast's correlation rows")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_forecast)


def _write_table(df: Any, path: str) -> Path:
    from corredit.atomic import atomic_write_parquet

    out = Path(path)
    if out.suffix == ".csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False)
    elif out.suffix == ".parquet":
        atomic_write_parquet(df, out)
    else:
        raise ValueError(f"{path}: expected a .parquet or .csv file name")
    return out


def _overrides(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        out = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--hparams: not JSON ({exc})") from None
    if not isinstance(out, dict):
        raise ValueError("--hparams: expected a JSON object")
    return out


def _forecast(args: argparse.Namespace) -> int:
    if (args.data is None) == (args.run is None):
        raise ValueError("give either DATA or --run RUN_DIR")
    return _run_mode(args) if args.run else _data_mode(args)


# -- DATA ------------------------------------------------------------------------------------

def _batches(args: argparse.Namespace, requests: Sequence) -> list[list[int]]:
    ids = [str(r.case_id) for r in requests]
    if args.schedule:
        import pandas as pd

        sched = pd.read_parquet(args.schedule)
        missing = [c for c in ("batch", "case_id") if c not in sched.columns]
        if missing:
            raise ValueError(f"{args.schedule}: schedule lacks columns {missing}")
        where = {c: i for i, c in enumerate(ids)}
        unknown = sorted(set(sched["case_id"].astype(str)) - set(where))
        if unknown:
            raise ValueError(f"{args.schedule}: case ids not in {args.data}: {unknown[:5]}")
        return [[where[str(c)] for c in g["case_id"]]
                for _, g in sched.sort_values(["batch"], kind="stable").groupby("batch", sort=True)]
    size = args.batch_size or len(ids)
    if size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {size}")
    return [list(range(s, min(s + size, len(ids)))) for s in range(0, len(ids), size)]


def _stats(args: argparse.Namespace, h: Any, editor: Any) -> dict[int, Any]:
    from corredit.paths import cache_root
    from corredit.stats import StatsCache
    from corredit.stats.sources import check_source, make_corpus

    source = args.stats_corpus or ("world" if args.model == "world" else None)
    if source is None:
        raise ValueError("forecast needs --stats-corpus (a text file, 'world' or hf:...) for "
                         "the key second moment C")
    check_source(source, "--stats-corpus")
    layers = [int(x) for x in editor.hparams_for(h).layers]
    tokens = args.stats_tokens or 20 * int(h.key_size)
    cache = StatsCache(cache_root() / "stats", progress=not args.quiet)
    return cache.get(h, layers, make_corpus(source, handle=h), tokens)


def _data_mode(args: argparse.Namespace) -> int:
    from corredit.correlation_commands import _load_requests
    from corredit.editors import forecast, get_editor
    from corredit.editors.forecast import gram_rule

    requests = _load_requests(args)
    batches = _batches(args, requests)
    if not args.model:
        raise ValueError("forecast needs --model (a folder, a name, or 'world')")
    editor = get_editor(args.editor)(_overrides(args.hparams) or None)
    gram_rule(editor)
    from corredit.models import load

    h = load(args.model, device=args.device)
    stats = _stats(args, h, editor)
    values = (editor.precompute_values(h, requests, stats=stats, seed=args.seed)
              if args.values else None)
    fc = forecast(h, requests, editor, stats, batches=batches, seed=args.seed, top_k=args.top_k,
                  values=values)
    edits, layers = fc.edit_frame(), fc.layer_frame()
    for path, df in ((args.out, edits), (args.out_layers, layers)):
        if path:
            _write_table(df, path)
    _print_batches(edits, layers)
    return 0


def _print_batches(edits: Any, layers: Any) -> None:
    per = layers[layers["layer"] >= 0].groupby("batch").agg(
        cond_G=("cond_G", "max"), cond_I_plus_G=("cond_I_plus_G", "max"),
        rank=("rank", "min"))
    summary = edits.groupby("batch").agg(n=("case_id", "size"), unfit=("unfit", "mean"),
                                         unfit_max=("unfit", "max"), cross=("cross", "mean"))
    table = summary.join(per).reset_index()
    print("| batch | n | mean unfit | max unfit | mean cross | max cond(G) | max cond(I+G) "
          "| min rank |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in table.itertuples():
        print(f"| {r.batch} | {r.n} | {r.unfit:.3f} | {r.unfit_max:.3f} | {r.cross:.3f} | "
              f"{r.cond_G:.3g} | {r.cond_I_plus_G:.3g} | {r.rank} |")


# -- --run -----------------------------------------------------------------------------------

def forecast_run_rows(run_dir: str | Path, *, values: bool = False, top_k: int = 3,
                      hparams: dict[str, Any] | None = None, progress: bool = True) -> Any:
    """The forecast of every finished batch-mode MEMIT-family trial of a run folder, as
    correlation rows (``metric = forecast:<measure>``, one per case and measure) carrying
    the trial's configuration columns."""
    import pandas as pd

    from corredit.config import RunConfig
    from corredit.editors import forecast
    from corredit.editors.forecast import edit_keys, gram_rule
    from corredit.results import CONFIG_COLUMNS, RunFolder
    from corredit.runner import RunInputs

    folder = RunFolder(run_dir)
    record = folder.read_config()
    record.pop("code_version", None)
    cfg = RunConfig.from_dict(record, source=str(Path(run_dir) / "config.json"))
    cfg.import_plugins()
    done = folder.finished_trials()
    schedules = folder.read_schedules()
    inputs = RunInputs(cfg, folder.root, selected=folder.read_edits(), progress=progress)
    frames = []
    for e in cfg.editors:
        editor = inputs.editor(e)
        if hparams:
            editor = type(editor)({**dict(e.hparams), **hparams})
        try:
            gram_rule(editor)
        except ValueError:
            continue
        specs = [t for t in cfg.trials() if t.editor is e and t.name in done]
        if e.mode != "batch" or not specs:
            continue
        h = inputs.handle()
        reqs = [inputs.requests()[i] for i in inputs.subset(e)]
        stats = inputs.stats()
        where = {str(r.case_id): i for i, r in enumerate(reqs)}
        vres: dict[int, Any] = {}
        keys: dict[int, Any] = {}
        for spec in specs:
            sched = schedules[schedules["trial"] == spec.name]
            if "position" in sched.columns:
                sched = sched.sort_values(["batch", "position"], kind="stable")
            if sched.empty:
                raise ValueError(f"{run_dir}: trial {spec.name} has no schedule file")
            batches = [[where[str(c)] for c in g["case_id"]]
                       for _, g in sched.groupby("batch", sort=True)]
            if values and spec.seed not in vres:
                vres[spec.seed] = editor.precompute_values(h, reqs, stats=stats, seed=spec.seed)
            if spec.seed not in keys:
                keys[spec.seed] = edit_keys(h, reqs, editor, seed=spec.seed)
            fc = forecast(h, reqs, editor, stats, batches=batches, seed=spec.seed,
                          top_k=top_k, values=vres.get(spec.seed), keys=keys[spec.seed])
            edits = fc.edit_frame()
            edits = edits[edits["batch"] >= 0]
            names = [m for m in (*MEASURES, *(VALUE_MEASURES if values else ()))]
            long = edits.melt(id_vars=["batch", "case_id"], value_vars=names,
                              var_name="metric", value_name="value")
            frames.append(long.assign(
                metric="forecast:" + long["metric"], run=cfg.name, trial=spec.name,
                step=long["batch"], prompt_kind="", prompt_index=0, suite="correlation"))
    if not frames:
        raise ValueError(f"{run_dir}: no finished batch-mode trial of a MEMIT-family editor")
    rows = pd.concat(frames, ignore_index=True)
    results = folder.read_results()
    cols = [c for c in CONFIG_COLUMNS if c in results.columns]
    conf = results.groupby("trial", sort=False)[cols].first().reset_index()
    return rows.merge(conf, on="trial", how="left")


def forecast_auc_table(results: Any, rows: Any, *, n_boot: int = 1000, seed: int = 0) -> Any:
    """ROC-AUC of every forecast and within-batch similarity measure for the failed edits
    of ``results`` (with ``rows`` from :func:`forecast_run_rows` added): the stratified
    AUC with its interval (:func:`~corredit.analysis.interference_auc`), the pooled AUC
    and, per forecast measure, the Spearman correlation with MEMIT's ``target_miss``."""
    import pandas as pd

    from corredit.analysis import case_table, interference_auc, interference_roc_curve

    df = pd.concat([results, rows], ignore_index=True)
    editors = sorted(rows["editor"].dropna().unique())
    df = df[df["editor"].isin(editors)]
    forecast = sorted(rows["metric"].unique())
    existing = sorted(m for m in results.loc[results["suite"] == "correlation", "metric"].unique()
                      if str(m).startswith("max_sim:"))
    measures = [*forecast, *existing]
    table = interference_auc(df, measures=measures, n_boot=n_boot, seed=seed)
    pooled = interference_roc_curve(df, measures=measures).groupby(
        ["editor", "measure"])["auc"].first().rename("pooled_auc").reset_index()
    table = table.merge(pooled, on=["editor", "measure"], how="left")
    miss = df[(df["suite"] == "diagnostics") & (df["metric"] == "target_miss")]
    if len(miss):
        cases = case_table(df)
        m = miss.groupby(["run", "trial", "case_id"])["value"].mean().rename("target_miss")
        cases = cases.merge(m.reset_index(), on=["run", "trial", "case_id"], how="left")
        rho = [cases[cases["editor"] == r.editor][[r.measure, "target_miss"]].corr(
            method="spearman").iloc[0, 1] if r.measure in cases else float("nan")
            for r in table.itertuples()]
        table["spearman_target_miss"] = rho
    return table


def _run_mode(args: argparse.Namespace) -> int:
    from corredit.plots.rundata import read_run

    rows = forecast_run_rows(args.run, values=args.values, top_k=args.top_k,
                             hparams=_overrides(args.hparams), progress=not args.quiet)
    if args.out_rows:
        _write_table(rows, args.out_rows)
    table = forecast_auc_table(read_run(args.run).results, rows, n_boot=args.n_boot)
    if args.out:
        _write_table(table, args.out)
    rho = "spearman_target_miss" in table.columns
    print("| editor | measure | AUC (within strata) | 95% CI | pooled AUC | n | failed |"
          + (" Spearman vs target_miss |" if rho else ""))
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |" + (" ---: |" if rho else ""))
    for r in table.itertuples():
        extra = f" {r.spearman_target_miss:.3f} |" if rho else ""
        print(f"| {r.editor} | {r.measure} | {r.auc:.3f} | [{r.lo:.3f}, {r.hi:.3f}] | "
              f"{r.pooled_auc:.3f} | {r.n} | {r.n_failed} |{extra}")
    notes = table[table["note"].astype(bool)]
    for r in notes.itertuples():
        print(f"{r.editor} {r.measure}: {r.note}", file=sys.stderr)
    return 0
