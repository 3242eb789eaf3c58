"""Causal-tracing figures: one fact's heatmap, the averages over facts, the profile
correlation.

Usage::

    from corredit.plots.locate import plot_trace_heatmap, plot_trace_average, plot_profile_correlation
    plot_trace_heatmap(rows, case_id="174")      # tokens × layers, one fact, one kind
    plot_trace_average(rows, kind="mlp")         # six token groups over layers, bootstrap CIs
    plot_profile_correlation(pairs)              # pairs of facts: same subject or not

Each takes the tidy rows of :func:`corredit.locate.trace` (or, for the averages, the
table of :func:`corredit.locate.aggregate`) and an optional ``ax``; returns the Axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from corredit.plots.backend import new_axes

__all__ = ["plot_trace_heatmap", "plot_trace_average", "plot_profile_correlation"]

_KIND_NAMES = {"hidden": "single restored layer", "mlp": "MLP", "attn": "attention"}
_CMAPS = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}


def plot_trace_heatmap(rows: pd.DataFrame, *, case_id: Any = None, kind: str | None = None,
                       ax: Any = None) -> Any:
    """Indirect effect of restoring each (token, layer) of one fact (default: the first
    case of the first kind); subject tokens marked with ``*``."""
    if rows.empty:
        raise ValueError("no tracing rows to draw")
    kind = kind if kind is not None else rows["kind"].iloc[0]
    rows = rows[rows["kind"] == kind]
    case_id = str(case_id) if case_id is not None else rows["case_id"].iloc[0]
    one = rows[rows["case_id"].astype(str) == case_id]
    if one.empty:
        raise ValueError(f"no {kind!r} rows for case {case_id!r}")
    grid = one.pivot_table(index="position", columns="layer", values="effect")
    tokens = one.drop_duplicates("position").set_index("position")["token"]
    head = one.iloc[0]
    first, last = int(head["subject_first"]), int(head["subject_last"])
    ax = new_axes(ax)
    image = ax.imshow(grid.to_numpy(), aspect="auto", cmap=_CMAPS.get(kind, "viridis"),
                      interpolation="nearest")
    ax.set_yticks(range(len(grid.index)))
    ax.set_yticklabels([repr(tokens[p])[1:-1] + ("*" if first <= p <= last else "") for p in grid.index],
                       fontsize=8)
    step = max(1, len(grid.columns) // 10)
    ax.set_xticks(range(0, len(grid.columns), step))
    ax.set_xticklabels([str(c) for c in grid.columns[::step]])
    window = int(head.get("window", 1))
    where = f"{_KIND_NAMES.get(kind, kind)} of {window} layers" if kind != "hidden" else _KIND_NAMES[kind]
    ax.set_xlabel(f"layer (centre of the window)" if kind != "hidden" else "layer")
    ax.set_title(f"{head['subject']}: restoring {where}\n"
                 f"p clean {head['p_clean']:.3f}, corrupted {head['p_corrupted']:.3f}", fontsize=9)
    cbar = ax.figure.colorbar(image, ax=ax)
    cbar.set_label("indirect effect (p restored − p corrupted)")
    return ax


def plot_trace_average(df: pd.DataFrame, *, kind: str | None = None, n_boot: int = 1000,
                       seed: int = 0, ax: Any = None) -> Any:
    """Average indirect effect per layer for the six token groups, with bootstrap 95%
    intervals over facts; ``df``: tracing rows or :func:`corredit.locate.aggregate`'s table."""
    from corredit.locate.aggregate import GROUPS, aggregate

    agg = df if {"group", "lo", "hi"} <= set(df.columns) else aggregate(df, n_boot=n_boot, seed=seed)
    kind = kind if kind is not None else agg["kind"].iloc[0]
    agg = agg[agg["kind"] == kind]
    if agg.empty:
        raise ValueError(f"no aggregate rows for kind {kind!r}")
    ax = new_axes(ax)
    for group in GROUPS:
        g = agg[agg["group"] == group].sort_values("layer")
        if g.empty:
            continue
        style = "-" if "subject" in group or group == "last token" else "--"
        line, = ax.plot(g["layer"], g["effect"], style, marker="o", ms=3, label=group)
        ax.fill_between(g["layer"], g["lo"].astype(float), g["hi"].astype(float), alpha=0.15,
                        color=line.get_color())
    n = int(agg["n_facts"].max())
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("layer")
    ax.set_ylabel("average indirect effect")
    ax.set_title(f"{_KIND_NAMES.get(kind, kind)}: restored over {n} facts", fontsize=9)
    ax.legend(fontsize=7)
    return ax


def plot_profile_correlation(pairs: pd.DataFrame, *, ax: Any = None) -> Any:
    """Correlation of two facts' layer profiles against their key similarity (when the
    pairs carry ``key_sim``), or its distribution for same- and different-subject pairs."""
    if pairs.empty:
        raise ValueError("no pairs of facts to draw")
    ax = new_axes(ax)
    same = pairs["same_subject"].to_numpy(bool)
    if "key_sim" in pairs:
        for mask, label, colour in ((~same, "different subject", "tab:grey"), (same, "same subject", "tab:red")):
            ax.scatter(pairs.loc[mask, "key_sim"], pairs.loc[mask, "profile_corr"], s=6, alpha=0.5,
                       label=f"{label} ({int(mask.sum())})", color=colour)
        ax.set_xlabel("key similarity (cosine)")
        ax.legend(fontsize=7)
    else:
        data = [pairs.loc[m, "profile_corr"].dropna().to_numpy() for m in (same, ~same)]
        keep = [i for i, d in enumerate(data) if len(d)]
        ax.boxplot([data[i] for i in keep])
        ax.set_xticks(range(1, len(keep) + 1))
        ax.set_xticklabels([["same subject", "different subject"][i] for i in keep])
    ax.set_ylabel("correlation of layer profiles")
    ax.set_title("Do related facts peak at the same layers?", fontsize=9)
    return ax
