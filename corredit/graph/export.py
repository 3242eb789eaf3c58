"""Export correlation graphs: GraphML files and pandas edge lists.

Usage::

    from corredit.graph import write_graphml, to_edge_frame
    write_graphml(G, "graph.graphml")          # read back: nx.read_graphml(p, node_type=int)
    edges = to_edge_frame(G)                   # source, target, source_case_id,
                                               # target_case_id, weight, <embeddings>, flags

GraphML holds booleans, integers, floats and strings: NumPy scalars become Python ones,
lists, tuples and dicts become JSON text, and an attribute whose value is ``None`` is left
out of that node or edge (GraphML's way of saying "missing").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

__all__ = ["graphml_ready", "write_graphml", "to_edge_frame"]


def _plain(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=lambda x: x.item() if hasattr(x, "item") else str(x))
    if isinstance(value, np.ndarray):
        return json.dumps(value.tolist())
    raise ValueError(f"{where}: value {value!r} of type {type(value).__name__} has no "
                     "GraphML type (bool, int, float, str)")


def _clean(attrs: dict, where: str) -> dict:
    out = {}
    for key, value in attrs.items():
        v = _plain(value, f"{where} attribute {key!r}")
        if v is not None:
            out[str(key)] = v
    return out


def graphml_ready(G: nx.Graph) -> nx.Graph:
    """A copy of ``G`` whose node, edge and graph attributes all have GraphML types."""
    H = G.__class__()
    H.graph.update(_clean(G.graph, "graph"))
    H.add_nodes_from((n, _clean(d, f"node {n!r}")) for n, d in G.nodes(data=True))
    H.add_edges_from((u, v, _clean(d, f"edge ({u!r}, {v!r})")) for u, v, d in G.edges(data=True))
    return H


def write_graphml(G: nx.Graph, path: str | os.PathLike) -> Path:
    """Write ``G`` to ``path`` as GraphML (see :func:`graphml_ready`); returns the path."""
    path = Path(path)
    nx.write_graphml(graphml_ready(G), path, infer_numeric_types=True)
    return path


def to_edge_frame(G: nx.Graph) -> pd.DataFrame:
    """One row per edge: ``source``, ``target`` (source < target for integer nodes),
    ``source_case_id``/``target_case_id`` when nodes carry ``case_id``, then the edge
    attributes; sorted by (source, target)."""
    rows = []
    for u, v, d in G.edges(data=True):
        if isinstance(u, (int, np.integer)) and isinstance(v, (int, np.integer)) and v < u:
            u, v = v, u
        rows.append({"source": u, "target": v, **d})
    attr_keys: list[str] = []
    for row in rows:
        for key in row:
            if key not in ("source", "target") and key not in attr_keys:
                attr_keys.append(key)
    frame = pd.DataFrame(rows, columns=["source", "target", *attr_keys])
    if any("case_id" in d for _, d in G.nodes(data=True)):
        case = dict(G.nodes(data="case_id"))
        frame.insert(2, "source_case_id", frame["source"].map(case).astype(object))
        frame.insert(3, "target_case_id", frame["target"].map(case).astype(object))
    if len(frame):
        try:
            frame = frame.sort_values(["source", "target"], kind="stable").reset_index(drop=True)
        except TypeError:
            pass  # nodes of mixed types keep the graph's edge order
    return frame
