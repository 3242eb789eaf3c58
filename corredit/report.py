"""The run report: summary tables, the figures and the config as ``report.md`` and
``report.html`` in the run folder.

Usage::

    from corredit.report import write_report, summary_table, markdown_table
    md_path, html_path = write_report("runs/demo")     # draws figures into runs/demo/figures
    print(markdown_table(summary_table(df)))           # the main table, e.g. for a console

Tables are rendered by :func:`markdown_table` / :func:`html_table` (no third-party
formatter needed). Torch-free; matplotlib is imported only when figures are drawn.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from corredit.plots.compute import (
    health_table,
    interference_auc,
    scheduler_differences,
    score_difference,
    score_difference_curve,
    suite_table,
    summary_table,
)
from corredit.plots.figures import (
    FIGURES,
    RunData,
    figure_availability,
    make_all_figures,
    read_manifest,
    read_run,
)
from corredit.atomic import atomic_write_text

__all__ = [
    "write_report",
    "summary_table",
    "markdown_table",
    "html_table",
    "report_tables",
]

#: Suites that get a table of their own beside the probability suite's summary.
OTHER_SUITES: tuple[str, ...] = ("teacher_forced", "zsre", "multihop")
_MISSING = "n/a"


# -- table rendering -------------------------------------------------------------------

def _cell(value: Any, fmt: str) -> str:
    if value is None or value is pd.NA:
        return _MISSING
    if isinstance(value, float):
        if math.isnan(value):
            return _MISSING
        return format(value, fmt)
    if hasattr(value, "dtype") and getattr(value, "dtype").kind == "f":  # numpy float
        return _cell(float(value), fmt)
    return str(value)


def _formatted(df: pd.DataFrame, floatfmt: str,
               formats: Mapping[str, str] | None) -> tuple[list[str], list[list[str]], list[bool]]:
    formats = formats or {}
    cols = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns]
    rows = [[_cell(v, formats.get(str(c), floatfmt)) for c, v in zip(df.columns, rec)]
            for rec in df.itertuples(index=False, name=None)]
    return cols, rows, numeric


def markdown_table(df: pd.DataFrame, *, floatfmt: str = ".1f",
                   formats: Mapping[str, str] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``df`` (index not shown); numeric columns
    right-aligned, floats formatted with ``formats[column]`` or ``floatfmt``, NaN as n/a.

    Example: ``markdown_table(pd.DataFrame({"editor": ["rome"], "ES": [99.25]}))`` ->
    ``'| editor | ES |\\n| --- | ---: |\\n| rome | 99.2 |'``.
    """
    cols, rows, numeric = _formatted(df, floatfmt, formats)

    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in cols) + " |",
             "| " + " | ".join("---:" if num else "---" for num in numeric) + " |"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(df: pd.DataFrame, *, floatfmt: str = ".1f",
               formats: Mapping[str, str] | None = None) -> str:
    """The same table as :func:`markdown_table`, as an escaped HTML ``<table>``."""
    cols, rows, numeric = _formatted(df, floatfmt, formats)
    align = [' class="num"' if num else "" for num in numeric]
    head = "".join(f"<th{a}>{html.escape(c)}</th>" for c, a in zip(cols, align))
    body = "".join("<tr>" + "".join(f"<td{a}>{html.escape(v)}</td>" for v, a in zip(row, align))
                   + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


# -- report content ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Block:
    """One piece of the report: ``kind`` in heading / text / table / image / code."""

    kind: str
    text: str = ""
    level: int = 2
    table: pd.DataFrame | None = None
    formats: Mapping[str, str] | None = None
    path: str = ""


def _values(df: pd.DataFrame, col: str) -> str:
    if col not in df.columns:
        return _MISSING
    vals = sorted({str(v) for v in df[col].dropna().unique()},
                  key=lambda v: (len(v), v) if v.isdigit() else (0, v))
    return ", ".join(vals) if vals else _MISSING


def _overview(run: RunData) -> pd.DataFrame:
    df = run.results
    items = [("run folder", str(run.root)),
             ("trials", str(df["trial"].nunique()) if "trial" in df else "0"),
             ("result rows", str(len(df)))]
    for col in ("model", "dataset", "editor", "mode", "scheduler", "batch_size", "seed",
                "code_version"):
        items.append((col, _values(df, col)))
    items.append(("suites", _values(df, "suite")))
    return pd.DataFrame(items, columns=["field", "value"])


def _ci(lo: float, hi: float, fmt: str = ".1f") -> str:
    if math.isnan(lo) or math.isnan(hi):
        return _MISSING
    return f"[{lo:{fmt}}, {hi:{fmt}}]"


def _with_ci(value: float, lo: float, hi: float) -> str:
    return _MISSING if math.isnan(value) else f"{value:.1f} {_ci(lo, hi)}"


def _units(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def _wide(table: pd.DataFrame, keys: list[str], metrics: Sequence[str],
          counts: Mapping[str, str]) -> pd.DataFrame:
    """One row per ``keys``: a ``value [lo, hi]`` cell per metric (of column ``diff``),
    then ``counts`` (new name: column) taken from the group's first row."""
    rows = []
    for key, g in table.groupby(keys, sort=True, dropna=False):
        rec = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        for m in metrics:
            hit = g[g["metric"] == m]
            rec[m] = (_with_ci(hit["diff"].iloc[0], hit["lo"].iloc[0], hit["hi"].iloc[0])
                      if len(hit) else _MISSING)
        first = g.iloc[0]
        for name, col in counts.items():
            rec[name] = (_units(int(first["n_units"]), first["unit"]) if col == "units"
                         else first[col])
        rows.append(rec)
    return pd.DataFrame(rows)


_INTERVALS = ("95% intervals: percentile bootstrap resampling whole subjects (cases when "
              "the run records no subjects), so an edit measured in several trials and edits "
              "sharing a subject count as the units they are.")


def _contrast_tables(df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame | None, str]]:
    """The paired scheduler differences and the Score Difference tables."""
    out: dict[str, tuple[pd.DataFrame | None, str]] = {}
    pairs = scheduler_differences(df)
    if not pairs.empty:
        keys = [c for c in pairs.columns if c not in (
            "metric", "score", "reference_score", "diff", "lo", "hi", "n_cases", "n_units",
            "unit")]
        out["Scheduler differences (paired)"] = (
            _wide(pairs, keys, ["ES", "PS", "NS", "S"], {"cases": "n_cases", "units": "units"}),
            "Each scheduler minus the reference scheduler on the same edits (points x100, "
            "after all edits; a case's score is its mean over seeds). " + _INTERVALS)
    try:
        sd = score_difference(df)
    except ValueError as exc:
        out["Score Difference"] = (None, str(exc))
        return out
    sd = sd.assign(ci=[_ci(lo, hi) for lo, hi in zip(sd["lo"], sd["hi"])],
                   units=[_units(n, u) for n, u in zip(sd["n_units"], sd["unit"])])
    sd = sd[["editor", "metric", "shared", "alone", "diff", "ci", "n_shared", "n_alone",
             "n_strata", "units", "note"]].rename(columns={
                 "shared": "same-subject", "alone": "other-subject", "diff": "SD",
                 "ci": "95% CI", "n_strata": "strata"})
    out["Score Difference"] = (sd, "Score x100 of edits whose subject has other edits in the "
                                   "same batch minus that of the others, computed within each "
                                   "scheduler x batch size (right after the batch) and "
                                   "combined with weights n_a n_b / (n_a + n_b). " + _INTERVALS)
    per = score_difference(df, by=("editor", "scheduler", "batch_size"), metrics=["ES", "S"])
    out["Score Difference by scheduler"] = (
        _wide(per, ["editor", "scheduler", "batch_size"], ["ES", "S"],
              {"same-subject": "n_shared", "other-subject": "n_alone", "note": "note"}
              ).rename(columns={"ES": "SD ES", "S": "SD S"}),
        "The Score Difference inside each scheduler x batch size stratum, with the number of "
        "same-subject and other-subject edits in it.")
    curve = score_difference_curve(df, metrics=["ES", "S"])
    if not curve.empty:
        wide = _wide(curve, ["editor", "k_low", "related"], ["ES", "S"],
                     {"related edits": "n_related", "alone": "n_alone", "units": "units"})
        out["Score Difference by number of related edits"] = (
            wide.drop(columns="k_low").rename(columns={
                "related": "edits of the subject in the batch", "ES": "SD ES", "S": "SD S"}),
            "Edits whose batch holds k edits of their subject (themselves included) minus "
            "edits alone with their subject, within scheduler x batch size strata.")
    return out


def report_tables(df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame | None, str]]:
    """The report's tables by title: ``{title: (table or None, note)}``; a table that the
    results cannot support is None with the reason as its note.

    Example: ``report_tables(df)["Summary (probability suite)"][0]``.
    """
    out: dict[str, tuple[pd.DataFrame | None, str]] = {}
    summary = summary_table(df)
    out["Summary (probability suite)"] = (
        (summary, "Scores x100 after all edits of each trial (in mode batch: after the case's "
                  "own batch); n = edit cases, seeds pooled; S = harmonic mean of ES, PS, NS.")
        if not summary.empty else (None, "no probability-suite rows after an edit"))
    for suite in OTHER_SUITES:
        table = suite_table(df, suite)
        if not table.empty:
            out[f"Suite {suite}"] = (table, "Means of the suite's metrics as stored; never "
                                            "mixed with the probability suite.")
    out.update(_contrast_tables(df))
    try:
        auc = interference_auc(df)
        auc = auc.assign(ci=[_ci(lo, hi, ".3f") for lo, hi in zip(auc["lo"], auc["hi"])],
                         units=[_units(n, u) for n, u in zip(auc["n_units"], auc["unit"])])
        auc = auc[["editor", "embedding", "auc", "ci", "n", "n_failed", "n_strata", "units",
                   "note"]].rename(columns={"ci": "95% CI", "n_strata": "strata"})
        out["Interference prediction (ROC-AUC)"] = (
            auc, "How well an edit's maximum similarity to the rest of its batch predicts "
                 "that it fails (ES = 0); 0.5 = chance. Pairs of a failed and a successful "
                 "edit are compared only within one scheduler x batch size. " + _INTERVALS)
    except ValueError as exc:
        out["Interference prediction (ROC-AUC)"] = (None, str(exc))
    health = health_table(df)
    if not health.empty:
        out["Model health"] = (health, "Perplexity on held-out text before any edit (step -1), "
                                       "at the last step and its maximum over steps; largest "
                                       "norm growth of an edited matrix. Means over trials.")
    return out


_FORMATS = {"auc": ".3f", "norm_growth_max": ".3f", "perplexity_before": ".2f",
            "perplexity_after": ".2f", "perplexity_max": ".2f"}


def _figure_blocks(run: RunData, figures_dir: Path) -> list[_Block]:
    manifest = read_manifest(figures_dir)
    status = {name: entry.get("skipped") for name, entry in manifest.items()}
    if not manifest:
        status = figure_availability(run)
    blocks: list[_Block] = [_Block("heading", "Figures")]
    skipped = []
    for name, reason in status.items():
        png = figures_dir / f"{name}.png"
        if reason or not png.exists():
            skipped.append((name, reason or "not drawn"))
            continue
        desc = FIGURES.get(name).description if name in FIGURES else ""
        rel = Path(os.path.relpath(png, run.root)).as_posix()
        blocks += [_Block("heading", name.replace("_", " "), level=3),
                   _Block("text", desc), _Block("image", name, path=rel)]
    known = set(status)
    for png in sorted(figures_dir.glob("*.png")):
        if png.stem not in known:
            rel = Path(os.path.relpath(png, run.root)).as_posix()
            blocks += [_Block("heading", png.stem.replace("_", " "), level=3),
                       _Block("image", png.stem, path=rel)]
    if skipped:
        blocks += [_Block("text", "Figures not drawn:"),
                   _Block("table", table=pd.DataFrame(skipped, columns=["figure", "reason"]))]
    return blocks


def _blocks(run: RunData, figures_dir: Path) -> list[_Block]:
    name = run.root.resolve().name
    blocks = [_Block("heading", f"Run report: {name}", level=1),
              _Block("table", table=_overview(run))]
    for title, (table, note) in report_tables(run.results).items():
        blocks.append(_Block("heading", title))
        if table is None:
            blocks.append(_Block("text", f"Not available: {note}"))
        else:
            blocks += [_Block("text", note), _Block("table", table=table, formats=_FORMATS)]
    blocks += _figure_blocks(run, figures_dir)
    blocks.append(_Block("heading", "Configuration"))
    if run.config:
        blocks.append(_Block("code", json.dumps(run.config, indent=2, sort_keys=True,
                                                default=str)))
    else:
        blocks.append(_Block("text", "No config.json in the run folder."))
    return blocks


def _markdown(blocks: Sequence[_Block]) -> str:
    parts = []
    for b in blocks:
        if b.kind == "heading":
            parts.append("#" * b.level + " " + b.text)
        elif b.kind == "text" and b.text:
            parts.append(b.text)
        elif b.kind == "table" and b.table is not None:
            parts.append(markdown_table(b.table, formats=b.formats))
        elif b.kind == "image":
            parts.append(f"![{b.text}]({b.path})")
        elif b.kind == "code":
            parts.append(f"```json\n{b.text}\n```")
    return "\n\n".join(parts) + "\n"


_STYLE = """body { font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; }
th { background: #f3f3f3; } td.num, th.num { text-align: right; }
img { max-width: 100%; } pre { background: #f6f6f6; padding: 0.75rem; overflow-x: auto; }"""


def _html(blocks: Sequence[_Block], title: str) -> str:
    parts = []
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif b.kind == "text" and b.text:
            parts.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "table" and b.table is not None:
            parts.append(html_table(b.table, formats=b.formats))
        elif b.kind == "image":
            src = html.escape(b.path, quote=True)
            parts.append(f'<p><img src="{src}" alt="{html.escape(b.text, quote=True)}"></p>')
        elif b.kind == "code":
            parts.append(f"<pre>{html.escape(b.text)}</pre>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


def write_report(run_dir: str | os.PathLike[str], *,
                 figures_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the run folder; returns their paths.

    Example: ``write_report("runs/demo")``. Without ``figures_dir`` the figures are drawn
    into ``<run>/figures``; with it, the PNGs already there are used (and drawn there
    first when it holds none). Images are linked by paths relative to the run folder.
    """
    run = read_run(run_dir)
    if figures_dir is None:
        figures = run.root / "figures"
        make_all_figures(run.root, figures)
    else:
        figures = Path(figures_dir)
        if not figures.is_dir() or not any(figures.glob("*.png")):
            make_all_figures(run.root, figures)
    blocks = _blocks(run, figures)
    md_path, html_path = run.root / "report.md", run.root / "report.html"
    atomic_write_text(_markdown(blocks), md_path)
    atomic_write_text(_html(blocks, f"Run report: {run.root.resolve().name}"), html_path)
    return md_path, html_path
