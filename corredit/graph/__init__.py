"""Correlation graphs between edits, from embeddings; never imports torch.

Usage::

    from corredit.graph import knn_graph, graph_statistics, to_edge_frame, write_graphml
    G = knn_graph(requests, {"subject_minilm": X1, "relation_tfidf": X2},
                  k=10, on="subject_minilm")
    graph_statistics(G, seed=0)       # density, degrees, clustering, components, modularity
    to_edge_frame(G)                  # pandas edge list with every edge attribute
    write_graphml(G, "edits.graphml")

    from corredit.graph import top_k_neighbors
    idx, sim = top_k_neighbors(X, k=10)   # exact, blockwise, bounded memory
"""

from corredit.graph.build import EDGE_FLAGS, RESERVED_EDGE_KEYS, knn_graph, threshold_graph
from corredit.graph.export import graphml_ready, to_edge_frame, write_graphml
from corredit.graph.nodes import NODE_FIELDS, request_table
from corredit.graph.similarity import (
    DEFAULT_BLOCK_BYTES,
    as_embedding,
    cosine_similarity,
    iter_similarity_blocks,
    normalize_rows,
    pair_similarity,
    pairs_above,
    top_k_neighbors,
)
from corredit.graph.stats import (
    communities,
    community_labels,
    degree_distribution,
    graph_statistics,
)

__all__ = [
    "knn_graph", "threshold_graph", "EDGE_FLAGS", "RESERVED_EDGE_KEYS",
    "graphml_ready", "to_edge_frame", "write_graphml",
    "NODE_FIELDS", "request_table",
    "DEFAULT_BLOCK_BYTES", "as_embedding", "cosine_similarity", "iter_similarity_blocks",
    "normalize_rows", "pair_similarity", "pairs_above", "top_k_neighbors",
    "communities", "community_labels", "degree_distribution", "graph_statistics",
]
