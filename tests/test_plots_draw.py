"""Each plot function draws on the Axes it is given (or a new one) and returns it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from corredit.plots import (
    plot_correlation_graph,
    plot_interference_roc,
    plot_retention,
    plot_scheduler_comparison,
    plot_score_difference,
    plot_scores_vs_correlation,
    plot_similarity_heatmap,
)
from corredit.plots.backend import new_figure, pyplot
from corredit.plots.testing import synthetic_results, tidy_frame


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return synthetic_results(n_cases=24, batch_sizes=(4, 8), sequential_cases=8, seed=2)


@pytest.fixture()
def ax():
    fig, axes = new_figure(1, 1)
    return axes[0, 0]


def test_importing_plots_and_report_loads_neither_torch_nor_matplotlib():
    code = ("import sys, corredit.plots, corredit.report; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scores_vs_correlation_one_line_and_band_per_editor(df, ax):
    assert plot_scores_vs_correlation(df, "max_sim:minilm", metric="PS", n_bins=3, n_boot=50,
                                      ax=ax) is ax
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    assert len(ax.lines[0].get_xdata()) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["memit", "rome"]


def test_scheduler_comparison_bars_per_editor_and_scheduler(df, ax):
    assert plot_scheduler_comparison(df, metric="ES", batch_size=8, n_boot=50, ax=ax) is ax
    assert len(ax.patches) == 2 * 2  # editors x schedulers
    heights = sorted(p.get_height() for p in ax.patches)
    assert 0.0 <= heights[0] and heights[-1] <= 100.0
    with pytest.raises(ValueError, match=r"batch sizes \[1, 4, 8\]"):
        plot_scheduler_comparison(df, ax=ax)


def test_retention_one_line_per_group(df, ax):
    assert plot_retention(df, by=("editor",), n_boot=50, ax=ax) is ax
    assert len(ax.lines) == 2
    assert list(ax.lines[0].get_xdata()) == list(range(8))


def test_score_difference_bars_and_zero_line(df, ax):
    assert plot_score_difference(df, n_boot=50, ax=ax) is ax
    assert len(ax.patches) == 2 * 4  # editors x (ES, PS, NS, S)
    assert any(np.allclose(line.get_ydata(), 0.0) for line in ax.lines)


def test_interference_roc_diagonal_plus_curve(df, ax):
    assert plot_interference_roc(df, editor="rome", ax=ax) is ax
    assert len(ax.lines) == 2
    assert "AUC" in ax.get_legend().get_texts()[0].get_text()


def test_interference_roc_single_class_raises_with_reason(ax):
    rows = []
    for i, sim in enumerate([0.2, 0.8]):
        rows += [dict(case_id=str(i), metric="ES", value=1.0),
                 dict(case_id=str(i), suite="correlation", prompt_kind="case",
                      metric="max_sim:x", value=sim)]
    with pytest.raises(ValueError, match="only one class"):
        plot_interference_roc(tidy_frame(rows), ax=ax)


def test_similarity_heatmap_orders_by_community(ax):
    sim = np.array([[1.0, 0.0, 0.9], [0.0, 1.0, 0.0], [0.9, 0.0, 1.0]])
    assert plot_similarity_heatmap(sim, [0, 1, 0], ax=ax) is ax
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown, [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert len(ax.lines) == 2  # one border, horizontal and vertical
    fig, axes = new_figure(1, 1)
    plot_similarity_heatmap(sim, [{1}, {0, 2}], ax=axes[0, 0])  # index-set form
    with pytest.raises(ValueError, match="2 labels for a 3 x 3"):
        plot_similarity_heatmap(sim, [0, 1], ax=ax)


def test_correlation_graph_colours_nodes_by_success(ax):
    edges = [("0", "1", 0.9), ("1", "2", 0.5), ("2", "3", 0.7), ("3", "4", 0.8), ("4", "5", 0.6)]
    success = {"0": 1.0, "1": 0.0, "2": 1.0, "3": 0.0}  # cases 4, 5 have no score
    assert plot_correlation_graph(edges, success, ax=ax, seed=0) is ax
    points = {c.get_offsets().shape[0]: c for c in ax.collections if c.get_offsets().shape[0] > 0
              and c.get_offsets().shape[1] == 2 and type(c).__name__ == "PathCollection"}
    assert sorted(points) == [2, 4]  # grey unscored nodes, coloured scored nodes
    assert sorted(points[4].get_array().tolist()) == [0.0, 0.0, 1.0, 1.0]
    assert len(ax.collections) == 3  # edges + two node sets


def test_correlation_graph_accepts_networkx_graph_and_str_keys(ax):
    nx = pytest.importorskip("networkx")
    plot_correlation_graph(nx.path_graph(3), pd.Series({"0": 1.0, "1": 0.5, "2": 0.0}), ax=ax,
                           colorbar=False)
    coloured = [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    assert len(coloured) == 1 and sorted(coloured[0].get_array()) == [0.0, 0.5, 1.0]


def test_plot_without_ax_makes_one(df):
    plt = pyplot()
    ax = plot_retention(df, n_boot=20)
    try:
        assert plt.fignum_exists(ax.figure.number)
        assert len(ax.lines) == 2  # the sequential trials of memit and rome
    finally:
        plt.close(ax.figure)


def test_new_plots_draw_precomputed_tables(df, ax, monkeypatch):
    from corredit.analysis import bootstrap as bootstrap_module
    from corredit.plots import (attach_subjects, plot_scheduler_differences,
                                plot_score_difference_curve, scheduler_differences,
                                score_difference_curve)
    from corredit.plots.testing import synthetic_subjects

    data = attach_subjects(df, synthetic_subjects(24))
    pairs = scheduler_differences(data, n_boot=50)
    assert set(pairs["reference"]) == {"random"} and (pairs["unit"] == "subject").all()
    curve = score_difference_curve(data, n_boot=50)
    # drawing does no resampling: it only reads the tables
    monkeypatch.setattr(bootstrap_module.Resampler, "weights",
                        lambda *a, **k: pytest.fail("a drawing function resampled"))
    assert plot_scheduler_differences(pairs, metric="ES", ax=ax) is ax
    fig, axes = new_figure(1, 1)
    assert plot_score_difference_curve(curve, metric="ES", ax=axes[0, 0]) is axes[0, 0]
    assert [t.get_text() for t in axes[0, 0].get_xticklabels()] == ["2"]
