"""Statistics of a correlation graph: density, degrees, clustering, components, communities.

Usage::

    from corredit.graph import graph_statistics, communities, degree_distribution
    stats = graph_statistics(G, seed=0)      # {'n_nodes':..., 'density':..., 'modularity':...}
    parts = communities(G, seed=0)           # Louvain, largest community first
    degree_distribution(G)                   # DataFrame: degree, count, fraction

Communities use Louvain (``networkx.community.louvain_communities``) with a seed, so the
same graph and seed give the same partition. Louvain needs non-negative weights: a graph
with a negative ``weight`` raises ``ValueError`` (pass ``weight=None`` to ignore weights).
"""

from __future__ import annotations

import math
from typing import Any, Hashable

import networkx as nx
import numpy as np
import pandas as pd

__all__ = ["graph_statistics", "degree_distribution", "communities", "community_labels"]


def degree_distribution(G: nx.Graph) -> pd.DataFrame:
    """How many nodes have each degree: columns ``degree``, ``count``, ``fraction``."""
    degrees = np.fromiter((d for _, d in G.degree()), dtype=np.int64, count=G.number_of_nodes())
    values, counts = np.unique(degrees, return_counts=True)
    total = max(len(degrees), 1)
    return pd.DataFrame({"degree": values, "count": counts, "fraction": counts / total})


def _node_key(node: Hashable) -> tuple[int, Any]:
    return (0, int(node)) if isinstance(node, (int, np.integer)) else (1, repr(node))


def _sort_key(part: frozenset) -> tuple[int, tuple[int, Any]]:
    return (-len(part), min(_node_key(x) for x in part))


def communities(
    G: nx.Graph, *, seed: int = 0, weight: str | None = "weight", resolution: float = 1.0
) -> list[frozenset[Hashable]]:
    """Louvain communities (seeded), largest first; equal sizes by smallest node."""
    if weight is not None:
        for u, v, w in G.edges(data=weight, default=1.0):
            if w < 0:
                raise ValueError(
                    f"edge ({u!r}, {v!r}) has negative {weight!r}={w}; Louvain needs "
                    "non-negative weights (pass weight=None to ignore them)"
                )
    if G.number_of_nodes() == 0:
        return []
    parts = nx.community.louvain_communities(G, weight=weight, resolution=resolution, seed=seed)
    return sorted((frozenset(p) for p in parts), key=_sort_key)


def community_labels(parts: list[frozenset[Hashable]]) -> dict[Hashable, int]:
    """``{node: community number}`` for a list of communities (numbered in list order)."""
    return {node: label for label, part in enumerate(parts) for node in part}


def graph_statistics(
    G: nx.Graph,
    *,
    seed: int = 0,
    weight: str | None = "weight",
    resolution: float = 1.0,
    with_communities: bool = True,
) -> dict[str, Any]:
    """Summary numbers of ``G`` (plain Python scalars): nodes, edges, density, degree
    mean/median/min/max, isolated nodes, average clustering, transitivity, connected
    components and the largest one's share, and (``with_communities``) the number of
    Louvain communities, the largest one's size and the partition's modularity."""
    n = G.number_of_nodes()
    m = G.number_of_edges()
    degrees = np.fromiter((d for _, d in G.degree()), dtype=np.float64, count=n)
    comps = sorted((len(c) for c in nx.connected_components(G)), reverse=True)
    out: dict[str, Any] = {
        "n_nodes": n,
        "n_edges": m,
        "density": float(nx.density(G)) if n > 1 else 0.0,
        "mean_degree": float(degrees.mean()) if n else math.nan,
        "median_degree": float(np.median(degrees)) if n else math.nan,
        "min_degree": int(degrees.min()) if n else 0,
        "max_degree": int(degrees.max()) if n else 0,
        "n_isolated": int((degrees == 0).sum()),
        "average_clustering": float(nx.average_clustering(G)) if n else math.nan,
        "transitivity": float(nx.transitivity(G)) if n else math.nan,
        "n_components": len(comps),
        "largest_component_size": comps[0] if comps else 0,
        "largest_component_fraction": comps[0] / n if n else math.nan,
    }
    if with_communities:
        parts = communities(G, seed=seed, weight=weight, resolution=resolution)
        out["n_communities"] = len(parts)
        out["largest_community_size"] = len(parts[0]) if parts else 0
        out["modularity"] = (
            float(nx.community.modularity(G, parts, weight=weight, resolution=resolution))
            if m else math.nan
        )
    return out
