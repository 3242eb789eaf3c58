"""Model embeddings: a hidden state of any layer, read at the subject's last token (or
at the end of a relation template or triple).

Usage::

    from corredit.models import load
    from corredit.embed.hidden import HiddenStateEmbedder
    h = load("world")
    X = HiddenStateEmbedder(h, layer=3, field="subject").fit_transform(requests)
    # residual stream after block 3 at the subject's last token of each rewrite prompt
    R = HiddenStateEmbedder(h, layer=3, field="relation").fit_transform(requests)
    # last token of the template with the subject slot shown as "X"
    M = HiddenStateEmbedder(h, layer=3, field="relation",
                            relation_from="subjects").fit_transform(requests)
    # per relation: mean over its requests of the rewrite prompt's last-token state
    K = HiddenStateEmbedder(h, layer=3, site="mlp_out", io="input").fit_transform(requests)
    # the bare MLP key (input of W_out) at the subject's last token

Torch and ``corredit.models`` are imported when an embedding is computed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import numpy as np

from corredit.embed.base import EMBEDDERS, Embedder, as_float32_rows
from corredit.embed.fields import (
    check_field, relation_keys, relation_template_text, unique_inverse,
)
from corredit.types import EditRequest

__all__ = ["HiddenStateEmbedder", "model_fingerprint", "read_states", "RELATION_FROM"]

#: How a model-based relation embedding is formed.
RELATION_FROM: tuple[str, ...] = ("template", "subjects")


def model_fingerprint(handle: Any, *, samples_per_tensor: int = 64) -> str:
    """A cheap identity of a model handle's weights: its name, configuration, parameter
    names and shapes, and an evenly strided sample of each parameter's values."""
    import torch

    h = hashlib.sha256()
    h.update(str(getattr(handle, "name", "")).encode())
    model = handle.model
    h.update(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // samples_per_tensor)
            sample = flat[::step].to("cpu", torch.float64).numpy()
            h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
            h.update(sample.tobytes())
    return "sample-sha256:" + h.hexdigest()


def _resolve_layer(handle: Any, layer: int) -> int:
    n = int(handle.n_layers)
    idx = layer + n if layer < 0 else layer
    if not 0 <= idx < n:
        raise ValueError(f"layer {layer} is out of range for {getattr(handle, 'name', 'model')} "
                         f"with {n} layers")
    return idx


def read_states(handle: Any, texts: Sequence[str], positions: Sequence[int | None], *,
                layer: int, site: str = "block", io: str = "output", batch_size: int = 32,
                progress: bool = False, desc: str = "hidden states") -> np.ndarray:
    """float32 ``(len(texts), dim)``: the value at ``Site(site, layer, io)`` of each text at
    its position (``None`` = the text's last token). Texts are batched by length, and the
    forward pass stops after ``layer``."""
    import torch
    from tqdm.auto import tqdm

    from corredit.models import Site, trace

    layer = _resolve_layer(handle, layer)
    where = Site(site, layer, io)
    n = len(texts)
    order = sorted(range(n), key=lambda i: len(texts[i]))
    out: np.ndarray | None = None
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, unit="batch"):
        chunk = order[start:start + batch_size]
        enc = handle.encode([texts[i] for i in chunk])
        mask = enc["attention_mask"]
        lengths = mask.sum(dim=1).tolist()
        pos = []
        for b, i in enumerate(chunk):
            p = positions[i]
            p = lengths[b] - 1 if p is None else int(p)
            if not 0 <= p < lengths[b]:
                raise ValueError(f"position {p} is outside text {texts[i]!r} "
                                 f"({lengths[b]} tokens)")
            pos.append(p)
        with torch.no_grad():
            res = trace(handle, enc["input_ids"], attention_mask=mask, read=[where],
                        stop_at_layer=layer)
        vals = res.values[where]
        rows = vals[torch.arange(len(chunk), device=vals.device),
                    torch.tensor(pos, device=vals.device)]
        rows = rows.detach().to("cpu", torch.float32).numpy()
        if out is None:
            out = np.empty((n, rows.shape[1]), dtype=np.float32)
        out[chunk] = rows
    if out is None:
        return np.zeros((0, int(getattr(handle, "hidden_size", 0))), dtype=np.float32)
    return out


@EMBEDDERS.register("hidden")
class HiddenStateEmbedder(Embedder):
    """A model's hidden state at ``Site(site, layer, io)`` (default: the residual stream
    after block ``layer``).

    field "subject": at the subject's last token of the rewrite prompt; "relation": at
    the last token of the template with the subject slot shown as ``placeholder``
    (``relation_from="template"``) or, per relation, the mean over its requests of the
    rewrite prompt's last-token state (``relation_from="subjects"``; relations are told
    apart by template or by relation id, see ``relation_source``); "triple": at the last
    token of rewrite prompt + new target.
    """

    name = "hidden"

    def __init__(self, handle: Any, layer: int, field: str = "subject", *,
                 site: str = "block", io: str = "output", relation_from: str = "template",
                 relation_source: str = "template", placeholder: str = "X",
                 batch_size: int = 32, progress: bool = False) -> None:
        self.handle = handle
        self.layer = layer
        self.field = field
        self.site = site
        self.io = io
        self.relation_from = relation_from
        self.relation_source = relation_source
        self.placeholder = placeholder
        self.batch_size = batch_size
        self.progress = progress

    def params(self) -> dict[str, Any]:
        return {"field": self.field, "layer": self.layer, "site": self.site, "io": self.io,
                "relation_from": self.relation_from, "relation_source": self.relation_source,
                "placeholder": self.placeholder}

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "model": getattr(self.handle, "name", ""),
                "model_fingerprint": model_fingerprint(self.handle)}

    # -- reading -------------------------------------------------------------------------
    def _states(self, texts: list[str], positions: list[int | None]) -> np.ndarray:
        pairs = [f"{p}\x1f{t}" for t, p in zip(texts, positions)]
        uniq, inverse = unique_inverse(pairs)
        idx = np.zeros(len(uniq), dtype=np.int64)
        idx[inverse[::-1]] = np.arange(len(pairs))[::-1]  # first occurrence of each
        X = read_states(self.handle, [texts[i] for i in idx], [positions[i] for i in idx],
                        layer=self.layer, site=self.site, io=self.io,
                        batch_size=self.batch_size, progress=self.progress,
                        desc=f"{self.name} {self.field} L{self.layer}")
        return X[inverse]

    def _subject_positions(self, requests: Sequence[EditRequest]) -> list[int | None]:
        from corredit.models import subject_token_index

        out: list[int | None] = []
        for r in requests:
            try:
                out.append(subject_token_index(self.handle.tokenizer, r.rewrite_prompt,
                                               r.subject))
            except (ValueError, LookupError) as exc:
                raise ValueError(f"request {r.case_id!r}: field 'subject': {exc}") from None
        return out

    def _relation_means(self, requests: Sequence[EditRequest]) -> dict[str, np.ndarray]:
        keys = relation_keys(requests, self.relation_source, self.placeholder)
        X = self._states([r.rewrite_prompt for r in requests], [None] * len(requests))
        uniq, inverse = unique_inverse(keys)
        sums = np.zeros((len(uniq), X.shape[1]), dtype=np.float64)
        np.add.at(sums, inverse, X.astype(np.float64))
        counts = np.bincount(inverse, minlength=len(uniq))[:, None]
        return {k: (sums[j] / counts[j]).astype(np.float32) for j, k in enumerate(uniq)}

    # -- Embedder ------------------------------------------------------------------------
    def fit(self, requests: Sequence[EditRequest]) -> "HiddenStateEmbedder":
        check_field(self.field)
        if self.relation_from not in RELATION_FROM:
            raise ValueError(f"unknown relation_from {self.relation_from!r}; "
                             f"known: {', '.join(RELATION_FROM)}")
        _resolve_layer(self.handle, self.layer)
        self.relation_means_: dict[str, np.ndarray] = {}
        if self.field == "relation" and self.relation_from == "subjects":
            self.relation_means_ = self._relation_means(requests)
        return self

    def transform(self, requests: Sequence[EditRequest]) -> np.ndarray:
        if not hasattr(self, "relation_means_"):
            self.fit([])
        reqs = list(requests)
        if self.field == "subject":
            X = self._states([r.rewrite_prompt for r in reqs], self._subject_positions(reqs))
        elif self.field == "triple":
            X = self._states([f"{r.rewrite_prompt} {r.target_new}" for r in reqs],
                             [None] * len(reqs))
        elif self.relation_from == "template":
            X = self._states([relation_template_text(r, self.placeholder) for r in reqs],
                             [None] * len(reqs))
        else:
            keys = relation_keys(reqs, self.relation_source, self.placeholder)
            means = dict(self.relation_means_)
            unseen = [r for r, k in zip(reqs, keys) if k not in means]
            if unseen:
                means.update(self._relation_means(unseen))
            X = np.stack([means[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)
        return as_float32_rows(X, len(reqs), source=f"{type(self).__name__}.transform")
