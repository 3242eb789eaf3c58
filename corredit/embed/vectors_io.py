"""Embedding matrices as parquet files: one row per edit, the vector as a fixed-size
float32 list, and what produced it in the file's metadata.

Usage::

    from corredit.embed import write_vectors, read_vectors
    write_vectors("vecs.parquet", case_ids, X, meta={"embedder": "tfidf", "field": "subject"})
    v = read_vectors("vecs.parquet")
    v.case_ids, v.matrix (float32 (n, dim)), v.meta["embedder"], v.name   # 'tfidf:subject'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from corredit.atomic import atomic_path

__all__ = ["Vectors", "write_vectors", "read_vectors", "META_KEY"]

#: Parquet schema metadata key holding the JSON description of the embedding.
META_KEY = b"corredit.embedding"


@dataclass
class Vectors:
    """Embeddings of edits: ``matrix[i]`` belongs to ``case_ids[i]``."""

    case_ids: list[str]
    matrix: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    texts: list[str] | None = None

    @property
    def name(self) -> str:
        """``meta['name']``, else ``'<embedder>:<field>'``, else ``'embedding'``."""
        if self.meta.get("name"):
            return str(self.meta["name"])
        if self.meta.get("embedder"):
            return ":".join(str(x) for x in (self.meta["embedder"], self.meta.get("field")) if x)
        return "embedding"

    def aligned_to(self, case_ids: Sequence[str], *, source: str = "vectors") -> np.ndarray:
        """Rows reordered to follow ``case_ids``; a ``ValueError`` names missing ids."""
        index = {c: i for i, c in enumerate(self.case_ids)}
        missing = [c for c in case_ids if c not in index]
        if missing:
            raise ValueError(f"{source}: no vector for case_id(s) {missing[:5]}"
                             + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        return self.matrix[[index[c] for c in case_ids]]


def write_vectors(path: str | os.PathLike[str], case_ids: Sequence[str], matrix: np.ndarray,
                  *, meta: dict[str, Any] | None = None,
                  texts: Sequence[str] | None = None) -> Path:
    """Write a parquet file with columns ``case_id``, ``vector`` (and ``text``); atomic."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))
    if X.ndim != 2 or X.shape[0] != len(case_ids):
        raise ValueError(f"{path}: matrix of shape {X.shape} does not match "
                         f"{len(case_ids)} case ids")
    if len(set(case_ids)) != len(case_ids):
        raise ValueError(f"{path}: case ids are not unique")
    dim = X.shape[1]
    vec = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1), type=pa.float32()), dim)
    cols = {"case_id": pa.array([str(c) for c in case_ids], type=pa.string()), "vector": vec}
    if texts is not None:
        if len(texts) != len(case_ids):
            raise ValueError(f"{path}: {len(texts)} texts for {len(case_ids)} case ids")
        cols["text"] = pa.array(list(texts), type=pa.string())
    table = pa.table(cols)
    info = {"dim": dim, "n": len(case_ids), **(meta or {})}
    table = table.replace_schema_metadata({META_KEY: json.dumps(info, default=str).encode()})
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_vectors(path: str | os.PathLike[str]) -> Vectors:
    """Read a file written by :func:`write_vectors` (or any parquet file with a
    ``case_id`` column and a list-valued ``vector`` column)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such embedding file")
    table = pq.read_table(path)
    for col in ("case_id", "vector"):
        if col not in table.column_names:
            raise ValueError(f"{path}: not an embedding file (no {col!r} column; "
                             f"columns: {table.column_names})")
    raw = (table.schema.metadata or {}).get(META_KEY)
    meta = json.loads(raw) if raw else {}
    vec = table.column("vector").combine_chunks()
    n = table.num_rows
    if n == 0:
        matrix = np.zeros((0, int(meta.get("dim", 0))), dtype=np.float32)
    else:
        import pyarrow.compute as pc

        lengths = pc.list_value_length(vec).to_numpy(zero_copy_only=False)
        if vec.null_count or len(set(lengths.tolist())) != 1:
            raise ValueError(f"{path}: column 'vector' holds missing rows or rows of "
                             "different lengths")
        flat = vec.flatten().to_numpy(zero_copy_only=False)
        matrix = np.asarray(flat, dtype=np.float32).reshape(n, flat.size // n)
    texts = table.column("text").to_pylist() if "text" in table.column_names else None
    return Vectors([str(c) for c in table.column("case_id").to_pylist()], matrix, meta, texts)
