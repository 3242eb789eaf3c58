"""Editor-space embeddings: the key an editor writes to, raw or whitened.

Usage::

    from corredit.editors import EditorKeyEmbedder, WhitenedKeyEmbedder
    K = EditorKeyEmbedder(h, editor="memit", seed=0).fit_transform(requests)
    # MEMIT's key at its first edit layer: subject's last token, averaged over the
    # editor's context templates exactly as the editor averages them (float32 (n, d_k))
    W = WhitenedKeyEmbedder(h, second_moment=C, layer=3).fit_transform(requests)
    # rows C^{-1/2} k_i : W[i] @ W[j] == k_i^T C^{-1} k_j

The key comes from the editing engine (the editor's hyperparameters, its seeded context
templates and its key reader), so these embeddings always match what the editor sees.
``key_fn`` replaces it with any ``key_fn(handle, requests, layer) -> (n, d_k)``. They
register as the embedders ``editor_key`` and ``whitened_key`` (``make_embedder`` imports
this module on first use).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from corredit.editors.base import get_editor
from corredit.editors.keys import KeyReader
from corredit.editors.templates import TemplateSampler
from corredit.embed.base import EMBEDDERS, Embedder, as_float32_rows
from corredit.embed.hidden import model_fingerprint
from corredit.embed.whitening import second_moment_matrix, whiten
from corredit.types import EditRequest

__all__ = ["EditorKeyEmbedder", "WhitenedKeyEmbedder", "EngineKeys", "KeyFunction"]

KeyFunction = Callable[[Any, Sequence[EditRequest], int], np.ndarray]


class EngineKeys:
    """The editing engine's key of each request at a layer: the editor's context templates
    (sampled from the model with ``seed``, cached on this object) applied to the rewrite
    prompt, the key read at the subject's last token, and averaged as the editor does
    (``key_averaging``)."""

    def __init__(self, editor: str = "memit", hparams: Mapping[str, Any] | None = None,
                 seed: int = 0) -> None:
        self.editor = editor
        self.hparams = dict(hparams or {})
        self.seed = seed
        self._editor = get_editor(editor)(self.hparams or None)
        self._sampler = TemplateSampler()

    def hparams_for(self, handle: Any) -> Any:
        """The editor's hyperparameters on ``handle``."""
        return self._editor.hparams_for(handle)

    def default_layer(self, handle: Any) -> int:
        """The editor's first edit layer on ``handle``."""
        return int(self.hparams_for(handle).layers[0])

    def __call__(self, handle: Any, requests: Sequence[EditRequest], layer: int) -> np.ndarray:
        from corredit.models import Site

        hp = self.hparams_for(handle)
        groups = self._sampler.groups(handle, prompts=hp.context_prompts,
                                      lengths=hp.context_templates, seed=self.seed,
                                      top_k=hp.context_top_k)
        reader = KeyReader(handle, list(requests), groups)
        site = Site("mlp_out", int(layer), "input")
        keys = reader.average(reader.read([site])[site], hp.key_averaging)
        return keys.detach().cpu().numpy()


def _only_subject(field: str, who: str) -> None:
    if field != "subject":
        raise ValueError(f"{who}: keys are read at the subject's last token, so only "
                         f"field='subject' is available (got {field!r})")


@EMBEDDERS.register("editor_key")
class EditorKeyEmbedder(Embedder):
    """The raw key ``k_i`` an editor computes for each request at ``layer`` (default: the
    editor's first edit layer)."""

    name = "editor_key"

    def __init__(self, handle: Any, layer: int | None = None, field: str = "subject", *,
                 editor: str = "memit", hparams: Mapping[str, Any] | None = None,
                 seed: int = 0, key_fn: KeyFunction | None = None,
                 batch_size: int = 64) -> None:
        self.handle = handle
        self.layer = layer
        self.field = field
        self.editor = editor
        self.hparams = dict(hparams or {})
        self.seed = seed
        self.key_fn = key_fn
        self.batch_size = batch_size

    def params(self) -> dict[str, Any]:
        return {"field": self.field, "layer": self.layer, "editor": self.editor,
                "hparams": self.hparams, "seed": self.seed,
                "key_fn": None if self.key_fn is None else getattr(
                    self.key_fn, "__qualname__", type(self.key_fn).__qualname__)}

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "layer": self.resolved_layer(),
                "model": getattr(self.handle, "name", ""),
                "model_fingerprint": model_fingerprint(self.handle)}

    def _keys(self) -> KeyFunction:
        if self.key_fn is not None:
            return self.key_fn
        if getattr(self, "engine_", None) is None:
            self.engine_ = EngineKeys(self.editor, self.hparams, self.seed)
        return self.engine_

    def resolved_layer(self) -> int:
        """``layer``, or the editor's first edit layer when ``layer`` is None."""
        if self.layer is not None:
            n = int(self.handle.n_layers)
            if not -n <= self.layer < n:
                raise ValueError(f"layer {self.layer} is out of range for "
                                 f"{getattr(self.handle, 'name', 'model')} with {n} layers")
            return self.layer % n
        fn = self._keys()
        if not isinstance(fn, EngineKeys):
            raise ValueError(f"{type(self).__name__}: give layer= when key_fn is set")
        return fn.default_layer(self.handle)

    def raw_keys(self, requests: Sequence[EditRequest]) -> np.ndarray:
        """float64 keys (n, d_k), computed ``batch_size`` requests at a time."""
        _only_subject(self.field, type(self).__name__)
        layer = self.resolved_layer()
        fn = self._keys()
        reqs = list(requests)
        parts = [np.asarray(fn(self.handle, reqs[s:s + self.batch_size], layer),
                            dtype=np.float64)
                 for s in range(0, len(reqs), self.batch_size)]
        if not parts:
            return np.zeros((0, int(self.handle.key_size)))
        return np.concatenate(parts)

    def fit(self, requests: Sequence[EditRequest]) -> "EditorKeyEmbedder":
        _only_subject(self.field, type(self).__name__)
        self.resolved_layer()
        return self

    def transform(self, requests: Sequence[EditRequest]) -> np.ndarray:
        return as_float32_rows(self.raw_keys(requests), len(requests),
                               source=f"{type(self).__name__}.transform")


@EMBEDDERS.register("whitened_key")
class WhitenedKeyEmbedder(EditorKeyEmbedder):
    """``C^{-1/2} k_i`` with ``C`` the layer's key second moment (an array, a
    ``SecondMoment``, or the ``{layer: SecondMoment}`` mapping that
    ``corredit.stats.second_moments`` returns; ``ridge`` adds ``ridge * I``), so that dot
    products of rows are the whitened inner products ``k_i^T C^{-1} k_j`` that decide
    editor interference."""

    name = "whitened_key"

    def __init__(self, handle: Any, layer: int | None = None, field: str = "subject", *,
                 second_moment: Any = None, ridge: float = 0.0, editor: str = "memit",
                 hparams: Mapping[str, Any] | None = None, seed: int = 0,
                 key_fn: KeyFunction | None = None, batch_size: int = 64) -> None:
        super().__init__(handle, layer, field, editor=editor, hparams=hparams, seed=seed,
                         key_fn=key_fn, batch_size=batch_size)
        self.second_moment = second_moment
        self.ridge = ridge

    def _matrix(self) -> np.ndarray:
        if self.second_moment is None:
            raise ValueError("WhitenedKeyEmbedder needs second_moment= (the layer's C, e.g. "
                             "corredit.stats.second_moments(h, [layer], corpus)[layer])")
        moment = self.second_moment
        layer = self.resolved_layer()
        if isinstance(moment, Mapping):
            if layer not in moment:
                raise ValueError(f"WhitenedKeyEmbedder: keys are read at layer {layer}, but the "
                                 f"second moments given are of layers {sorted(moment)}")
            moment = moment[layer]
        m_layer = getattr(moment, "layer", None)
        if m_layer is not None and int(m_layer) != layer:
            raise ValueError(f"WhitenedKeyEmbedder: the second moment is of layer {m_layer} "
                             f"but the keys are read at layer {layer}")
        return second_moment_matrix(moment, ridge=self.ridge)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "ridge": self.ridge}

    def identity(self) -> dict[str, Any]:
        M = self._matrix()
        digest = hashlib.sha256(np.ascontiguousarray(M).tobytes()).hexdigest()
        return {**super().identity(), "second_moment_sha256": digest}

    def fit(self, requests: Sequence[EditRequest]) -> "WhitenedKeyEmbedder":
        super().fit(requests)
        self._matrix()
        return self

    def transform(self, requests: Sequence[EditRequest]) -> np.ndarray:
        W = whiten(self.raw_keys(requests), self._matrix())
        return as_float32_rows(W, len(requests), source=f"{type(self).__name__}.transform")
