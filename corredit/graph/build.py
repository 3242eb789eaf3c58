"""Correlation graphs between edits: kNN or threshold graphs as ``networkx.Graph``.

Usage::

    from corredit.graph import knn_graph, threshold_graph
    G = knn_graph(requests, {"subject_minilm": X1, "relation_tfidf": X2},
                  k=10, on="subject_minilm")
    G.nodes[0]        # {'case_id': '0', 'subject': ..., 'relation_id': ..., 'target_new': ...,
                      #  'target_true': ..., 'subject_first': True}
    G.edges[0, 5]     # {'weight': 0.81, 'subject_minilm': 0.81, 'relation_tfidf': 0.12,
                      #  'shared_subject': False, 'shared_relation': True,
                      #  'shared_object': False, 'shared_true_object': False, 'mutual': True}
    H = threshold_graph(requests, X1, threshold=0.7)   # one unnamed embedding: 'similarity'

Nodes are the request indices ``0..n-1``. The graph is built from the embedding named
``on`` (which may be left out when only one is given); ``weight`` is the cosine similarity
under it, and every edge also carries its similarity under each embedding, by name.
``shared_object`` compares ``target_new``, ``shared_true_object`` compares ``target_true``
(False when either is missing).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import networkx as nx
import numpy as np
import pandas as pd

from corredit.graph.nodes import request_table
from corredit.graph.similarity import (
    DEFAULT_BLOCK_BYTES, normalize_rows, pair_similarity, pairs_above, top_k_neighbors,
)
from corredit.types import EditRequest

__all__ = ["knn_graph", "threshold_graph", "EDGE_FLAGS", "RESERVED_EDGE_KEYS"]

Embeddings = Mapping[str, np.ndarray] | np.ndarray
Requests = Sequence[EditRequest] | pd.DataFrame

#: Edge flags comparing the two requests' fields.
EDGE_FLAGS: dict[str, str] = {
    "shared_subject": "subject",
    "shared_relation": "relation_id",
    "shared_object": "target_new",
    "shared_true_object": "target_true",
}
#: Edge attribute names that an embedding may not take.
RESERVED_EDGE_KEYS: frozenset[str] = frozenset({
    "weight", "mutual", *EDGE_FLAGS,
    "source", "target", "source_case_id", "target_case_id",  # edge-list columns
})


def _named_embeddings(
    embeddings: Embeddings, n: int, on: str | None
) -> tuple[dict[str, np.ndarray], str]:
    if isinstance(embeddings, Mapping):
        named = dict(embeddings)
    else:
        named = {"similarity": embeddings}
    if not named:
        raise ValueError("no embedding given")
    for name in named:
        if not isinstance(name, str) or not name:
            raise ValueError(f"embedding names must be non-empty strings, got {name!r}")
        if name in RESERVED_EDGE_KEYS:
            raise ValueError(f"embedding name {name!r} is reserved for another attribute")
    if on is None:
        if len(named) > 1:
            raise ValueError(f"several embeddings given {sorted(named)}; say which one to "
                             "build the graph from with on=NAME")
        on = next(iter(named))
    if on not in named:
        raise ValueError(f"on={on!r} is not among the embeddings {sorted(named)}")
    unit = {name: normalize_rows(_check_rows(X, name, n), name=f"embedding {name!r}")
            for name, X in named.items()}
    return unit, on


def _check_rows(X: np.ndarray, name: str, n: int) -> np.ndarray:
    shape = np.shape(X)
    if len(shape) != 2 or shape[0] != n:
        raise ValueError(f"embedding {name!r}: expected shape ({n}, dim) for {n} edits, "
                         f"got {shape}")
    return X


def _assemble(
    table: pd.DataFrame,
    unit: dict[str, np.ndarray],
    on: str,
    a: np.ndarray,
    b: np.ndarray,
    extra: dict[str, np.ndarray],
    graph_attrs: dict[str, object],
) -> nx.Graph:
    G = nx.Graph()
    G.graph.update(graph_attrs)
    G.graph["embedding"] = on
    G.graph["embeddings"] = ",".join(unit)
    records = table.to_dict("records")
    G.add_nodes_from((i, rec) for i, rec in enumerate(records))
    columns: dict[str, list] = {}
    for name, Xn in unit.items():
        columns[name] = pair_similarity(Xn, a, b, normalized=True).astype(float).tolist()
    columns["weight"] = columns[on]
    for flag, field in EDGE_FLAGS.items():
        values = table[field].to_numpy(dtype=object)
        codes, _ = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
        same = (codes[a] == codes[b]) & (codes[a] >= 0)
        columns[flag] = same.tolist()
    for key, arr in extra.items():
        columns[key] = np.asarray(arr).tolist()
    keys = ["weight", *unit, *EDGE_FLAGS, *extra]
    values = [columns[k] for k in keys]
    G.add_edges_from(
        (u, v, dict(zip(keys, row)))
        for u, v, row in zip(a.tolist(), b.tolist(), zip(*values))
    )
    return G


def knn_graph(
    requests: Requests,
    embeddings: Embeddings,
    *,
    k: int = 10,
    on: str | None = None,
    mutual: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> nx.Graph:
    """The k-nearest-neighbour graph under embedding ``on``: an edge joins i and j when j
    is among i's top ``k`` or i among j's (both, with ``mutual=True``); the edge flag
    ``mutual`` says whether both hold. Exact neighbours, computed blockwise."""
    table = request_table(requests)
    n = len(table)
    unit, on = _named_embeddings(embeddings, n, on)
    idx, _ = top_k_neighbors(unit[on], k, normalized=True, block_bytes=block_bytes)
    src = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
    dst = idx.ravel()
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    keys, counts = np.unique(lo * n + hi, return_counts=True)
    if mutual:
        keys, counts = keys[counts == 2], counts[counts == 2]
    a, b = keys // n, keys % n
    return _assemble(table, unit, on, a, b, {"mutual": counts == 2},
                     {"kind": "knn", "k": int(k), "mutual_only": bool(mutual)})


def threshold_graph(
    requests: Requests,
    embeddings: Embeddings,
    *,
    threshold: float,
    on: str | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    max_edges: int = 5_000_000,
) -> nx.Graph:
    """The graph joining every pair whose similarity under ``on`` is at least
    ``threshold``. Raises ``ValueError`` beyond ``max_edges`` edges."""
    table = request_table(requests)
    n = len(table)
    unit, on = _named_embeddings(embeddings, n, on)
    a, b, _ = pairs_above(unit[on], float(threshold), normalized=True,
                          block_bytes=block_bytes, max_pairs=max_edges)
    return _assemble(table, unit, on, a, b, {},
                     {"kind": "threshold", "threshold": float(threshold)})
