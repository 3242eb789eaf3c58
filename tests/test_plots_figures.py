"""make_all_figures and the analysis scripts on synthetic run folders."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from corredit.plots import FIGURES, FigureUnavailable, build_figure, make_all_figures, read_run
from corredit.plots.figures import figure_availability
from corredit.plots.testing import write_synthetic_run

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    """Batch trials at sizes 4 and 8, sequential trials, a correlation graph."""
    return write_synthetic_run(tmp_path_factory.mktemp("full") / "run", n_cases=16,
                               batch_sizes=(4,), sequential_cases=6, seed=0)


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory) -> Path:
    """Only batches of one: no within-batch similarity, no retention, no graph."""
    return write_synthetic_run(tmp_path_factory.mktemp("sparse") / "run", graph=False,
                               n_cases=6, batch_sizes=(1,), schedulers=("random",), seed=0)


def test_make_all_figures_writes_every_figure(full_run, tmp_path):
    out = tmp_path / "figs"
    paths = make_all_figures(full_run, out, formats=("png", "svg"), dpi=40)
    names = [p.stem for p in paths]
    assert names == ["scores_vs_correlation", "scheduler_comparison", "scheduler_differences",
                     "retention", "score_difference", "score_difference_curve",
                     "interference_roc", "similarity_heatmap", "correlation_graph"]
    for p in paths:
        assert p.suffix == ".png" and p.read_bytes()[:8] == PNG_MAGIC
        assert b"<svg" in p.with_suffix(".svg").read_bytes()[:400]
    manifest = json.loads((out / "figures.json").read_text())
    assert manifest["retention"]["files"] == ["retention.png", "retention.svg"]


def test_make_all_figures_skips_absent_data_with_reason(sparse_run, tmp_path, caplog):
    out = tmp_path / "figs"
    with caplog.at_level("INFO", logger="corredit.plots.figures"):
        paths = make_all_figures(sparse_run, out, formats=("png",), dpi=40)
    assert [p.stem for p in paths] == ["scheduler_comparison"]
    assert sorted(p.name for p in out.iterdir()) == ["figures.json", "scheduler_comparison.png"]
    manifest = json.loads((out / "figures.json").read_text())
    assert "no sequential trials" in manifest["retention"]["skipped"]
    assert "size 1" in manifest["scores_vs_correlation"]["skipped"]
    assert "no graph_edges.parquet" in manifest["correlation_graph"]["skipped"]
    assert "figure retention skipped: no sequential trials" in caplog.text
    avail = figure_availability(sparse_run)
    assert avail["scheduler_comparison"] is None and avail["retention"]


def test_build_figure_errors(sparse_run):
    with pytest.raises(FigureUnavailable, match="'retention' not drawn: no sequential"):
        build_figure("retention", read_run(sparse_run))
    with pytest.raises(KeyError, match="unknown figure 'nope'; known: .*retention"):
        build_figure("nope", sparse_run)
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        read_run(sparse_run / "missing")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"fig_{name}", ANALYSIS / f"fig_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_analysis_script_per_figure():
    assert sorted(p.stem for p in ANALYSIS.glob("fig_*.py")) == sorted(
        f"fig_{n}" for n in FIGURES.names())
    for name in FIGURES.names():
        assert _script(name).NAME == name


def test_analysis_script_writes_png_and_pdf(full_run, tmp_path, capsys):
    assert _script("score_difference").main([str(full_run), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["score_difference.pdf",
                                                          "score_difference.png"]
    assert (tmp_path / "score_difference.pdf").read_bytes()[:4] == b"%PDF"
    assert "score_difference.png" in capsys.readouterr().out


def test_analysis_script_reports_absent_data(sparse_run, tmp_path, capsys):
    assert _script("retention").main([str(sparse_run), "--out", str(tmp_path)]) == 2
    assert "no sequential trials" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_graph_nodes_map_to_case_ids():
    from corredit.plots.figures import _node_case_ids

    edges = pd.DataFrame({"source": [0, 1], "target": [1, 2], "source_case_id": ["c7", "c8"],
                          "target_case_id": ["c8", "c9"], "weight": [0.9, 0.8]})
    assert _node_case_ids(edges, [0, 1, 2], {"0", "1"}, None) == {0: "c7", 1: "c8", 2: "c9"}
    plain = edges[["source", "target", "weight"]]
    schedule = pd.DataFrame({"index": [0, 1, 2], "case_id": ["c7", "c8", "c9"]})
    assert _node_case_ids(plain, [0, 1, 2], {"0"}, schedule) == {0: "c7", 1: "c8", 2: "c9"}
    assert _node_case_ids(plain, [0, 1, 2], {"0", "2"}, None) == {0: "0", 2: "2"}
    named = pd.DataFrame({"source": ["a"], "target": ["b"]})
    assert _node_case_ids(named, ["a", "b"], {"a"}, schedule) == {"a": "a"}
