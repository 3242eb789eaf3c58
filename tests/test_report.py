"""The run report: table rendering, the tables it holds, figure links, md + html."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from corredit.plots import make_all_figures
from corredit.plots.testing import tidy_frame, write_synthetic_run
from corredit.report import html_table, markdown_table, report_tables, summary_table, write_report


def test_markdown_table_formats_aligns_and_escapes():
    df = pd.DataFrame({"editor": ["ro|me", "memit"], "n": [3, 4], "ES": [99.25, np.nan],
                       "auc": [0.51234, 0.7]})
    assert markdown_table(df, formats={"auc": ".3f"}) == (
        "| editor | n | ES | auc |\n"
        "| --- | ---: | ---: | ---: |\n"
        "| ro\\|me | 3 | 99.2 | 0.512 |\n"
        "| memit | 4 | n/a | 0.700 |")


def test_html_table_escapes():
    out = html_table(pd.DataFrame({"a<b": ["<x>"], "v": [1.0]}))
    assert "<th>a&lt;b</th>" in out and "<td>&lt;x&gt;</td>" in out
    assert '<td class="num">1.0</td>' in out


def test_report_tables_say_why_a_table_is_missing():
    df = tidy_frame([dict(case_id="a", value=1.0), dict(case_id="b", value=0.0)])
    tables = report_tables(df)
    summary, _ = tables["Summary (probability suite)"]
    assert summary["ES"].tolist() == [50.0]
    assert tables["Score Difference"][0] is None
    assert "same_subject_in_batch" in tables["Score Difference"][1]
    assert tables["Interference prediction (ROC-AUC)"][0] is None
    assert "Model health" not in tables


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("report") / "run", n_cases=12,
                               batch_sizes=(4,), sequential_cases=5, seed=0)


def test_write_report_md_and_html(run_dir):
    make_all_figures(run_dir, run_dir / "figures", formats=("png",), dpi=40,
                     names=("retention", "correlation_graph"))
    md_path, html_path = write_report(run_dir, figures_dir=run_dir / "figures")
    assert (md_path, html_path) == (run_dir / "report.md", run_dir / "report.html")
    md, page = md_path.read_text(), html_path.read_text()
    df = pd.concat([pd.read_parquet(p) for p in sorted((run_dir / "trials").glob("*.parquet"))])
    summary = summary_table(df)
    rome_seq = summary[(summary["editor"] == "rome") & (summary["mode"] == "sequential")].iloc[0]
    assert (f"| sequential | rome | random | 1 | {rome_seq['n']} | {rome_seq['ES']:.1f} |"
            in md)
    for title in ("## Summary (probability suite)", "## Score Difference",
                  "## Score Difference by scheduler", "## Score Difference by number of related",
                  "## Scheduler differences (paired)", "## Interference prediction (ROC-AUC)",
                  "## Model health", "## Configuration"):
        assert title in md
    assert "subjects |" in md and "resampling whole subjects" in md  # edits.jsonl was read
    assert "![retention](figures/retention.png)" in md
    assert '<img src="figures/retention.png"' in page and "<table>" in page
    assert page.count("<img ") == md.count("![") == 2
    for link in ("figures/retention.png", "figures/correlation_graph.png"):
        assert (run_dir / link).exists()
    assert '"sequential_cases": 5' in md


def test_write_report_uses_given_figures_without_redrawing(run_dir, tmp_path):
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "custom_plot.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    md_path, html_path = write_report(run_dir, figures_dir=figs)
    md = md_path.read_text()
    assert sorted(p.name for p in figs.iterdir()) == ["custom_plot.png"]  # nothing drawn
    assert "custom_plot.png)" in md and "../" in md  # relative to the run folder
    assert "![retention]" not in md


def test_write_report_lists_skipped_figures(tmp_path):
    run = write_synthetic_run(tmp_path / "run", graph=False, n_cases=4, batch_sizes=(1,),
                              schedulers=("random",), health=False)
    md_path, _ = write_report(run)
    md = md_path.read_text()
    assert "Figures not drawn:" in md and "| retention | no sequential trials" in md
    assert "## Model health" not in md
    assert "no edit shares its subject with another edit of its batch" in md
