"""Drawing similarity structure: a heatmap ordered by community and the correlation graph
coloured by edit success.

Usage::

    from corredit.plots import plot_similarity_heatmap, plot_correlation_graph
    plot_similarity_heatmap(sim, labels)                 # sim (n, n); labels: community per row
    plot_correlation_graph(edges_df, {"c1": 1.0, "c2": 0.0}, seed=0)

Both take an optional ``ax`` and return the Axes drawn on.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from corredit.plots.backend import new_axes, pyplot
from corredit.plots.network import community_labels, community_order, graph_from_edges, graph_layout

__all__ = ["plot_similarity_heatmap", "plot_correlation_graph"]


def _as_labels(communities: Any, n: int) -> np.ndarray:
    """Per-row labels from either labels (length n) or a collection of index sets."""
    items = list(communities)
    if items and isinstance(items[0], (set, frozenset, list, tuple, np.ndarray)):
        return community_labels(items, list(range(n)))
    if len(items) != n:
        raise ValueError(f"communities: {len(items)} labels for a {n} x {n} similarity matrix")
    return np.asarray(items)


def plot_similarity_heatmap(similarity: Any, communities: Iterable[Any], *, ax: Any = None,
                            cmap: str = "viridis", vmin: float | None = None,
                            vmax: float | None = None, boundaries: bool = True,
                            colorbar: bool = True, label: str = "similarity") -> Any:
    """Heatmap of a similarity matrix with rows and columns grouped by community (largest
    first), community borders drawn as thin lines.

    Example: ``plot_similarity_heatmap(np.eye(4), [0, 1, 0, 1])`` or with communities as
    index sets: ``plot_similarity_heatmap(sim, [{0, 2}, {1, 3}])``.
    """
    sim = np.asarray(similarity, dtype=float)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be a square matrix, got shape {sim.shape}")
    n = sim.shape[0]
    labels = _as_labels(communities, n)
    order = community_order(labels)
    ax = new_axes(ax)
    image = ax.imshow(sim[np.ix_(order, order)], cmap=cmap, vmin=vmin, vmax=vmax,
                      interpolation="nearest")
    if boundaries and n:
        ordered = pd.Series(labels[order]).astype(str).to_numpy()
        for b in np.flatnonzero(ordered[1:] != ordered[:-1]) + 1:
            ax.axhline(b - 0.5, color="white", linewidth=0.6)
            ax.axvline(b - 0.5, color="white", linewidth=0.6)
    if n > 30:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("edits, grouped by community")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, shrink=0.8, label=label)
    return ax


def _lookup(success: Mapping[Hashable, float] | pd.Series, node: Hashable) -> float:
    for k in (node, str(node)):
        if k in success:
            v = success[k]
            return float("nan") if v is None else float(v)
    return float("nan")


def plot_correlation_graph(graph: Any, success: Mapping[Hashable, float] | pd.Series, *,
                           ax: Any = None, pos: Mapping[Hashable, Sequence[float]] | None = None,
                           seed: int = 0, weight: str = "weight", cmap: str = "RdYlGn",
                           node_size: float | None = None, colorbar: bool = True) -> Any:
    """The correlation graph with nodes coloured by edit success (0 = failed, red; 1 =
    succeeded, green; grey = no score) and edges drawn fainter for lower weight.

    Example: ``plot_correlation_graph(nx.path_graph(3), {0: 1.0, 1: 0.0, 2: 0.5})``;
    ``graph`` may also be an edge list (DataFrame with ``source``/``target``[/``weight``]
    or ``(u, v[, w])`` tuples). ``success`` maps node (or ``str(node)``) to a value in
    [0, 1]. ``pos`` defaults to a seeded spring layout.
    """
    import networkx as nx

    pyplot()  # networkx draws through pyplot: pick the backend first
    g = graph_from_edges(graph, weight=weight)
    ax = new_axes(ax)
    pos = dict(graph_layout(g, seed=seed, weight=weight) if pos is None else pos)
    n = g.number_of_nodes()
    size = node_size if node_size is not None else float(np.clip(3000.0 / max(n, 1), 8, 120))
    if g.number_of_edges():
        w = np.array([d.get(weight, 1.0) for _, _, d in g.edges(data=True)], dtype=float)
        span = np.ptp(w) if w.size else 0.0
        rel = (w - w.min()) / span if span > 0 else np.ones_like(w)
        alpha = float(np.clip(150.0 / w.size, 0.03, 0.35))  # dense graphs stay readable
        nx.draw_networkx_edges(g, pos, ax=ax, width=0.3 + 1.2 * rel, alpha=alpha,
                               edge_color="grey")
    nodes = list(g.nodes)
    values = np.array([_lookup(success, v) for v in nodes], dtype=float)
    known = [v for v, x in zip(nodes, values) if not np.isnan(x)]
    unknown = [v for v, x in zip(nodes, values) if np.isnan(x)]
    if unknown:
        nx.draw_networkx_nodes(g, pos, nodelist=unknown, node_color="lightgrey",
                               node_size=size, ax=ax, label="no score")
    if known:
        coll = nx.draw_networkx_nodes(g, pos, nodelist=known, node_color=values[~np.isnan(values)],
                                      cmap=cmap, vmin=0.0, vmax=1.0, node_size=size, ax=ax,
                                      edgecolors="black", linewidths=0.2)
        if colorbar:
            ax.figure.colorbar(coll, ax=ax, shrink=0.8, label="edit success (ES)")
    ax.set_axis_off()
    return ax
