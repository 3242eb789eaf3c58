"""Embeddings of edit requests: what a subject, a relation or a whole triple looks like
to a text encoder, to a model's hidden states, or to an editor.

Usage::

    from corredit.embed import make_embedder, embed_requests, EmbeddingCache, EMBEDDERS
    emb = make_embedder("tfidf", field="subject")            # no model needed
    X = emb.fit(requests).transform(requests)                 # float32 (n, dim), unit rows
    emb = make_embedder("minilm", field="relation")           # all-MiniLM-L6-v2, offline
    emb = make_embedder("hidden", handle=h, layer=3)          # residual stream, subject token
    X = embed_requests(requests, emb, cache=EmbeddingCache(), dataset="world")

    from corredit.embed import whitened_gram, interference, memit_crosstalk
    P = interference(keys, C)      # p(k_i, k_j) = k_iᵀC⁻¹k_j / k_iᵀC⁻¹k_i

Registered embedders: ``tfidf``, ``minilm`` (text); ``hidden`` (model hidden state);
``editor_key`` and ``whitened_key`` (an editor's key at its edit layer, raw or
``C^{-1/2} k``; defined in ``corredit.editors.key_embedding``, which the registry imports
on first use). Each takes ``field`` = ``"subject" | "relation" | "triple"``.
"""

from corredit.embed.base import EMBEDDERS, Embedder, make_embedder
from corredit.embed.cache import EmbeddingCache, cache_key, default_cache_dir, embed_requests
from corredit.embed.fields import FIELDS, field_texts
from corredit.embed.hidden import HiddenStateEmbedder, model_fingerprint
from corredit.embed.text import SentenceEncoderEmbedder, TfidfEmbedder, minilm_model_dir
from corredit.embed.vectors_io import Vectors, read_vectors, write_vectors
from corredit.embed.whitening import (
    interference,
    inverse_sqrt,
    memit_crosstalk,
    memit_transfer,
    whiten,
    whitened_gram,
)

__all__ = [
    "EMBEDDERS",
    "Embedder",
    "make_embedder",
    "FIELDS",
    "field_texts",
    "TfidfEmbedder",
    "SentenceEncoderEmbedder",
    "minilm_model_dir",
    "HiddenStateEmbedder",
    "model_fingerprint",
    "EmbeddingCache",
    "embed_requests",
    "cache_key",
    "default_cache_dir",
    "Vectors",
    "read_vectors",
    "write_vectors",
    "inverse_sqrt",
    "whiten",
    "whitened_gram",
    "interference",
    "memit_crosstalk",
    "memit_transfer",
]

EMBEDDERS.provide("editor_key", "corredit.editors.key_embedding")
EMBEDDERS.provide("whitened_key", "corredit.editors.key_embedding")
