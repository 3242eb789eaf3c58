"""On-disk cache of second-moment statistics, with provenance and resumption.

Usage::

    from corredit.stats import StatsCache, TextsCorpus
    cache = StatsCache("~/.cache/corredit/stats")
    mom = cache.get(h, [2, 3], TextsCorpus(texts, identity="world-v1"), max_tokens=20000)
    cache.path(h, 3, corpus, 20000)        # where layer 3's file lives

Layout: ``ROOT/<model>/<corpus>-<key>/layer<L>.npz`` in the reference ``.npz`` layout
(``mom2.mom2``, ``mom2.count``) plus a ``corredit.provenance`` JSON record: model name,
SHA-256 of its weights, layer, corpus identity, token budget, truncation length, token
and document counts, dtype (the accumulation precision: "float64", or "mixed" for
float32 partial sums flushed into float64, see :mod:`corredit.stats.products`).
``<key>`` hashes corpus identity, budget, truncation and precision.

Provenance. An entry is used only when model name, weights hash, layer, corpus, budget,
truncation length and dtype all match the request. Otherwise ``on_mismatch="error"``
(the default) raises :class:`~corredit.stats.ProvenanceError` naming the file and the
differing fields; ``on_mismatch="recompute"`` computes the statistics again and
overwrites the entry. Statistics are meant for the unedited model: compute them before
editing (an edited model has other weights, so its request does not match).

Resumption. While computing, the partial sums and the number of documents and tokens
consumed are written to ``partial-L<layers>.npz`` every ``checkpoint_every`` batches
(default: every ``checkpoint_seconds``). A later ``get`` for the same layers continues
from there with the batch size recorded in the partial file and gives exactly the
result of an uninterrupted run. The partial file is removed once the entries are written.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from corredit.atomic import atomic_path
from corredit.stats.collect import PRECISIONS, StatsState, accumulate, finalize
from corredit.stats.corpus import Corpus
from corredit.stats.moment import SecondMoment
from corredit.stats.npz import load_npz, save_npz
from corredit.stats.provenance import PROVENANCE_KEYS, ProvenanceError, WeightsHasher

__all__ = ["StatsCache"]

_MISMATCH_POLICIES = ("error", "recompute")


def _slug(text: str, limit: int = 48) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"
    return s[-limit:]


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class StatsCache:
    """A folder of cached statistics (see module doc for layout and policies)."""

    def __init__(self, root: str | Path, *, on_mismatch: str = "error", batch_size: int = 16,
                 max_length: int | None = 128, precision: str = "float64",
                 checkpoint_every: int | None = None, checkpoint_seconds: float = 300.0,
                 progress: bool = False, flush_tokens: int | None = None) -> None:
        if on_mismatch not in _MISMATCH_POLICIES:
            raise ValueError(f"on_mismatch must be one of {_MISMATCH_POLICIES}, got {on_mismatch!r}")
        self.root = Path(root).expanduser()
        self.on_mismatch = on_mismatch
        self.batch_size = batch_size
        self.max_length = max_length
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.flush_tokens = flush_tokens      # "mixed" only: see corredit.stats.products
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.progress = progress
        self.hasher = WeightsHasher()

    # -- locations -------------------------------------------------------------------
    def entry_dir(self, h: Any, corpus: Corpus, max_tokens: int | None,
                  max_length: int | None = None) -> Path:
        """The folder holding every layer's statistics for one (model, corpus, budget)."""
        ml = self.max_length if max_length is None else max_length
        key = _digest(h.name, corpus.identity, max_tokens, ml, self.precision)
        return (self.root / f"{_slug(h.name)}-{_digest(h.name)[:6]}"
                / f"{_slug(corpus.identity)}-{key}")

    def path(self, h: Any, layer: int, corpus: Corpus, max_tokens: int | None,
             max_length: int | None = None) -> Path:
        """The file of one layer's statistics."""
        return self.entry_dir(h, corpus, max_tokens, max_length) / f"layer{int(layer)}.npz"

    def partial_path(self, h: Any, layers: Iterable[int], corpus: Corpus,
                     max_tokens: int | None, max_length: int | None = None) -> Path:
        """The file of an interrupted computation of ``layers``."""
        tag = "_".join(str(l) for l in sorted(set(layers)))
        return self.entry_dir(h, corpus, max_tokens, max_length) / f"partial-L{tag}.npz"

    # -- provenance ------------------------------------------------------------------
    def expected(self, h: Any, corpus: Corpus, max_tokens: int | None,
                 max_length: int | None = None) -> dict[str, Any]:
        """The provenance fields a usable entry must carry (``layer`` aside)."""
        return {
            "model": h.name,
            "weights_hash": self.hasher(h.model),
            "corpus": corpus.identity,
            "max_tokens": max_tokens,
            "max_length": self.max_length if max_length is None else max_length,
            "dtype": self.precision,
        }

    @staticmethod
    def _mismatch(found: dict[str, Any], expected: dict[str, Any]) -> list[str]:
        return [f"{k}: cached {found.get(k)!r} != requested {expected[k]!r}"
                for k in PROVENANCE_KEYS if k in expected and found.get(k) != expected[k]]

    def _refuse(self, path: Path, problems: list[str]) -> None:
        raise ProvenanceError(
            f"{path}: cached statistics do not match the request ({'; '.join(problems)}). "
            f"Delete the file or use StatsCache(..., on_mismatch='recompute')")

    # -- reading and writing ---------------------------------------------------------
    def load(self, h: Any, layer: int, corpus: Corpus, max_tokens: int | None,
             max_length: int | None = None) -> SecondMoment | None:
        """The cached statistics of one layer, ``None`` when absent. A present entry
        with other provenance raises :class:`ProvenanceError` (whatever the policy)."""
        path = self.path(h, layer, corpus, max_tokens, max_length)
        if not path.is_file():
            return None
        m = load_npz(path, layer=layer)
        want = {**self.expected(h, corpus, max_tokens, max_length), "layer": int(layer)}
        problems = self._mismatch(m.provenance, want)
        if problems:
            self._refuse(path, problems)
        return m

    def put(self, h: Any, moments: dict[int, SecondMoment], corpus: Corpus,
            max_tokens: int | None, max_length: int | None = None) -> list[Path]:
        """Store finished statistics (their provenance gains the current weights hash)."""
        want = self.expected(h, corpus, max_tokens, max_length)
        paths = []
        for layer, m in moments.items():
            m.provenance = {**m.provenance, **want, "layer": int(layer)}
            paths.append(save_npz(self.path(h, layer, corpus, max_tokens, max_length), m))
        return paths

    def import_npz(self, path: str | Path, h: Any, layer: int, corpus: Corpus,
                   max_tokens: int | None, max_length: int | None = None) -> Path:
        """Register a reference ``.npz`` (e.g. downloaded ROME statistics) as the entry
        for this model, layer, corpus and budget; the caller vouches that it was computed
        on this model's current weights."""
        m = load_npz(path, layer=layer)
        d_k = getattr(h, "key_size", m.d_k)
        if m.d_k != d_k:
            raise ValueError(f"{path}: field 'mom2.mom2' is {m.d_k}x{m.d_k}, the model's "
                             f"keys have size {d_k}")
        m.provenance = {**m.provenance, "tokens": m.count, "imported_from": str(path)}
        return self.put(h, {int(layer): m}, corpus, max_tokens, max_length)[0]

    def _save_partial(self, path: Path, state: StatsState) -> None:
        arrays: dict[str, Any] = {
            "documents": np.array(state.documents), "tokens": np.array(state.tokens),
            "meta": np.array(json.dumps(state.meta, sort_keys=True)),
        }
        for layer, m in state.moments.items():
            arrays[f"layer{layer}.sum"] = m.sum.numpy()
            arrays[f"layer{layer}.count"] = np.array(m.count)
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)

    def _load_partial(self, path: Path, layers: list[int]) -> StatsState:
        with np.load(path, allow_pickle=False) as d:
            meta = json.loads(str(d["meta"]))
            moments = {
                l: SecondMoment(torch.from_numpy(np.array(d[f"layer{l}.sum"])),
                                int(d[f"layer{l}.count"]), l)
                for l in layers
            }
            return StatsState(moments, int(d["documents"]), int(d["tokens"]), False, meta)

    # -- the main entry point ----------------------------------------------------------
    def get(self, h: Any, layers: Iterable[int], corpus: Corpus, max_tokens: int | None, *,
            batch_size: int | None = None, max_length: int | None = None,
            compute: bool = True) -> dict[int, SecondMoment]:
        """``{layer: SecondMoment}``: cached entries where present, the rest computed in
        one pass (resuming an interrupted one) and stored. ``compute=False`` raises
        ``FileNotFoundError`` for a missing entry instead of computing it."""
        layers = sorted({int(l) for l in layers})
        ml = self.max_length if max_length is None else max_length
        bs = self.batch_size if batch_size is None else batch_size
        want = self.expected(h, corpus, max_tokens, ml)
        out: dict[int, SecondMoment] = {}
        todo: list[int] = []
        for layer in layers:
            path = self.path(h, layer, corpus, max_tokens, ml)
            if not path.is_file():
                todo.append(layer)
                continue
            m = load_npz(path, layer=layer)
            problems = self._mismatch(m.provenance, {**want, "layer": layer})
            if not problems:
                out[layer] = m
            elif self.on_mismatch == "recompute":
                todo.append(layer)
            else:
                self._refuse(path, problems)
        if not todo:
            return out
        if not compute:
            raise FileNotFoundError(
                f"no cached statistics for layers {todo} of {h.name!r} on corpus "
                f"{corpus.identity!r} (max_tokens={max_tokens}) under {self.root}")
        out.update(self._compute(h, todo, corpus, max_tokens, ml, bs, want))
        return {l: out[l] for l in layers}

    def _compute(self, h: Any, layers: list[int], corpus: Corpus, max_tokens: int | None,
                 max_length: int | None, batch_size: int, want: dict[str, Any]
                 ) -> dict[int, SecondMoment]:
        ppath = self.partial_path(h, layers, corpus, max_tokens, max_length)
        state = None
        if ppath.is_file():
            state = self._load_partial(ppath, layers)
            problems = self._mismatch(state.meta.get("provenance", {}), want)
            if problems and self.on_mismatch == "error":
                self._refuse(ppath, problems)
            if problems:
                state = None
            else:
                batch_size = int(state.meta.get("batch_size", batch_size))
        flush = self.flush_tokens if state is None else state.meta.get("flush_tokens", self.flush_tokens)
        meta = {"provenance": want, "batch_size": batch_size, "layers": layers, "flush_tokens": flush}

        def checkpoint(s: StatsState) -> None:
            s.meta = meta
            self._save_partial(ppath, s)

        state = accumulate(h, layers, corpus, max_tokens=max_tokens, batch_size=batch_size,
                           max_length=max_length, state=state, on_checkpoint=checkpoint,
                           checkpoint_every=self.checkpoint_every,
                           checkpoint_seconds=self.checkpoint_seconds, progress=self.progress,
                           precision=self.precision, flush_tokens=flush)
        moments = finalize(h, state, corpus, max_tokens=max_tokens, max_length=max_length,
                           batch_size=batch_size, precision=self.precision, flush_tokens=flush,
                           extra={"weights_hash": want["weights_hash"]})
        self.put(h, moments, corpus, max_tokens, max_length)
        ppath.unlink(missing_ok=True)
        return moments
