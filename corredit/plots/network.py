"""Pure graph-side computations for the heatmap and graph figures.

Usage::

    from corredit.plots.network import graph_from_edges, community_labels, community_order
    g = graph_from_edges(pd.read_parquet("runs/demo/graph_edges.parquet"))
    sim, nodes = similarity_from_graph(g)          # dense matrix of edge weights
    labels = community_labels(detect_communities(g, seed=0), nodes)
    order = community_order(labels)                # rows/columns grouped by community

networkx is imported inside the functions that need it.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "graph_from_edges",
    "similarity_from_graph",
    "detect_communities",
    "community_labels",
    "community_order",
    "largest_communities_subgraph",
    "graph_layout",
]


def graph_from_edges(edges: Any, *, source: str = "source", target: str = "target",
                     weight: str = "weight") -> Any:
    """A ``networkx.Graph`` from a graph (returned as is) or an edge list DataFrame
    (``networkx.to_pandas_edgelist`` layout: ``source``, ``target`` and optional ``weight``
    and other edge attributes).

    Example: ``graph_from_edges(pd.DataFrame({"source": [0], "target": [1], "weight": [.9]}))``.
    """
    import networkx as nx

    if isinstance(edges, nx.Graph):
        return edges
    if not isinstance(edges, pd.DataFrame):  # (source, target) or (source, target, weight)
        rows = [tuple(e) for e in edges]
        width = len(rows[0]) if rows else 2
        if width not in (2, 3):
            raise ValueError(f"edge list rows have {width} items; expected (source, target"
                             "[, weight])")
        edges = pd.DataFrame(rows, columns=[source, target, weight][:width])
    missing = [c for c in (source, target) if c not in edges.columns]
    if missing:
        raise ValueError(f"edge list lacks columns {missing}; columns present: {list(edges.columns)}")
    attrs = [c for c in edges.columns if c not in (source, target)]
    return nx.from_pandas_edgelist(edges, source=source, target=target,
                                   edge_attr=attrs or None)


def similarity_from_graph(graph: Any, nodes: Sequence[Hashable] | None = None, *,
                          weight: str = "weight") -> tuple[np.ndarray, list[Hashable]]:
    """Dense symmetric matrix of edge weights (0 where no edge, 1 on the diagonal) and the
    node order of its rows. Edges without ``weight`` count as 1."""
    import networkx as nx

    nodes = list(graph.nodes) if nodes is None else list(nodes)
    sim = nx.to_numpy_array(graph, nodelist=nodes, weight=weight, nonedge=0.0, dtype=float)
    np.fill_diagonal(sim, 1.0)
    return sim, nodes


def detect_communities(graph: Any, *, seed: int = 0, weight: str = "weight") -> list[set]:
    """Louvain communities of ``graph`` (seeded), largest first."""
    import networkx as nx

    if graph.number_of_nodes() == 0:
        return []
    w = weight if any(weight in d for _, _, d in graph.edges(data=True)) else None
    comms = nx.community.louvain_communities(graph, weight=w, seed=seed)
    return sorted((set(c) for c in comms), key=lambda c: (-len(c), sorted(map(str, c))))


def community_labels(communities: Iterable[Iterable[Hashable]],
                     nodes: Sequence[Hashable]) -> np.ndarray:
    """Per-node community index (position of the community in ``communities``) for
    ``nodes``; a node in no community gets its own label after the last one."""
    label: dict[Hashable, int] = {}
    for i, comm in enumerate(communities):
        for node in comm:
            label[node] = i
    nxt = max(label.values(), default=-1) + 1
    out = np.empty(len(nodes), dtype=int)
    for j, node in enumerate(nodes):
        if node not in label:
            label[node] = nxt
            nxt += 1
        out[j] = label[node]
    return out


def community_order(labels: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Row order grouping equal labels: larger communities first, ties by label, then
    the original index.

    Example: ``community_order([1, 0, 1, 2])`` -> ``array([0, 2, 1, 3])``.
    """
    labels = pd.Series(list(labels))
    if labels.empty:
        return np.zeros(0, dtype=int)
    size = labels.map(labels.value_counts())
    key = pd.DataFrame({"size": -size.to_numpy(), "label": labels.astype(str).to_numpy(),
                        "index": np.arange(len(labels))})
    return key.sort_values(["size", "label", "index"], kind="stable")["index"].to_numpy()


def largest_communities_subgraph(graph: Any, communities: Sequence[set],
                                 max_nodes: int) -> tuple[Any, list[set]]:
    """The subgraph spanned by whole communities taken largest first until ``max_nodes``
    would be exceeded (at least one community, cut to ``max_nodes`` if it alone is
    larger), and those communities."""
    kept: list[set] = []
    total = 0
    for comm in communities:
        if kept and total + len(comm) > max_nodes:
            break
        if not kept and len(comm) > max_nodes:
            comm = set(sorted(comm, key=str)[:max_nodes])
        kept.append(comm)
        total += len(comm)
    nodes = set().union(*kept) if kept else set()
    return graph.subgraph(nodes).copy(), kept


def graph_layout(graph: Any, *, seed: int = 0, weight: str = "weight",
                 iterations: int = 50) -> Mapping[Hashable, np.ndarray]:
    """Seeded spring layout ``{node: (x, y)}``."""
    import networkx as nx

    if graph.number_of_nodes() == 0:
        return {}
    w = weight if any(weight in d for _, _, d in graph.edges(data=True)) else None
    return nx.spring_layout(graph, seed=seed, weight=w, iterations=iterations)
