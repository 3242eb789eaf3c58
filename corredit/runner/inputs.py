"""What a run computes once and its trials share: the edits, the model, second moments,
embeddings, schedules, held-out windows and shared value vectors.

Usage::

    from corredit.runner import RunInputs
    inputs = RunInputs(config, "runs/x", handle=h)     # handle / requests: already in memory
    inputs.requests()                                  # the edits, [data] filters applied
    inputs.stats(); inputs.embeddings()                # through the on-disk caches
    inputs.schedule(config.editors[0], "random", 8, seed=0)

Statistics and embeddings are cached on disk under ``config.cache_dir`` (default
:func:`corredit.paths.cache_root`); everything else lives on the instance, once per run.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from corredit.atomic import atomic_write_parquet
from corredit.config import EditorConfig, RunConfig
from corredit.data.selection import select_requests
from corredit.paths import cache_root
from corredit.runner.progress import progress_bar
from corredit.types import EditRequest

__all__ = ["RunInputs"]

log = logging.getLogger(__name__)


class RunInputs:
    """The shared inputs of one run of ``config`` whose folder is ``root``.

    ``handle``: a loaded model to use instead of loading ``config.model``; ``requests``:
    edits to use instead of reading ``config.data.source`` (the ``[data]`` filters still
    apply); ``selected``: edits that already passed them (a worker process reads the run
    folder's ``edits.jsonl``)."""

    def __init__(self, config: RunConfig, root: str | os.PathLike[str], *, handle: Any = None,
                 requests: Sequence[EditRequest] | None = None,
                 selected: Sequence[EditRequest] | None = None, progress: bool = True) -> None:
        self.config = config
        self.root = Path(root)
        self.progress = progress
        self.cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else cache_root()
        self._handle = handle
        self._given = None if requests is None else list(requests)
        self._requests: list[EditRequest] | None = None if selected is None else list(selected)
        self._subsets: dict[str, list[int]] = {}
        self._values: dict[tuple[str, int], Any] = {}
        self._stats: dict[int, Any] | None = None
        self._embeddings: dict[str, np.ndarray] | None = None
        self._windows: list[list[int]] | None = None
        self._schedules: dict[tuple[str, str, int, int], Any] = {}

    # -- data and model ------------------------------------------------------------------
    def handle(self) -> Any:
        """The model handle (loaded once)."""
        if self._handle is None:
            from corredit.models import load

            self._handle = load(self.config.model, device=self.config.device,
                                dtype=self.config.dtype, progress=self.progress)
        return self._handle

    def raw_requests(self) -> list[EditRequest]:
        """The edits before the ``[data]`` filters: the given ones, or the source's."""
        if self._given is not None:
            return self._given
        data = self.config.data
        if data.source == "world":
            from corredit.world import load_world

            w = load_world()
            accepted = inspect.signature(w.requests).parameters
            wanted = {"relations": data.relations, "subject_first": data.subject_first,
                      "seed": data.seed}
            kwargs = {k: v for k, v in wanted.items()
                      if k in accepted and (v is not None or k == "seed")}
            if "relations" in kwargs:
                kwargs["relations"] = list(kwargs["relations"])
            return w.requests(**kwargs)
        from corredit.data import load_dataset

        res = load_dataset(data.source, format=data.format, **data.options)
        res.check(strict=data.strict)      # problems: loud on stderr, or an error with strict
        return res.requests

    def requests(self) -> list[EditRequest]:
        """The run's edits (loaded and selected once)."""
        if self._requests is None:
            data = self.config.data
            raw = self.raw_requests()
            if data.known is None:
                self._requests = select_requests(raw, data)
            else:
                self._requests = self._known_requests(select_requests(
                    raw, dataclasses.replace(data, max_edits=None)))
        return self._requests

    def _known_requests(self, candidates: list[EditRequest]) -> list[EditRequest]:
        """The first ``max_edits`` candidates (in a seeded order) that the unedited model
        knows; verdicts are read from, or written to, the run folder's ``known.parquet``."""
        data = self.config.data
        path = self.root / "known.parquet"
        order = np.random.default_rng(data.seed).permutation(len(candidates))
        shuffled = [candidates[i] for i in order]
        tag = f"{self.config.model}|{data.known}|{data.known_k}|{data.seed}|{data.max_edits}"
        kept_ids: list[str] | None = None
        if path.is_file():
            table = pd.read_parquet(path)
            if "selection" in table and set(table["selection"]) == {tag}:
                kept_ids = table.loc[table["known"], "case_id"].astype(str).tolist()
        if kept_ids is None:
            from corredit.evaluate.known import select_known

            sel = select_known(self.handle(), shuffled, criterion=data.known, k=data.known_k,
                               limit=data.max_edits)
            atomic_write_parquet(sel.table.assign(selection=tag), path)
            kept_ids = [str(r.case_id) for r in sel.kept]
        if data.max_edits is not None:
            kept_ids = kept_ids[: data.max_edits]
        wanted = set(kept_ids)
        out = [r for r in candidates if str(r.case_id) in wanted]
        if not out:
            raise ValueError(f"data source {data.source!r}: the model knows none of the "
                             f"{len(candidates)} edits that pass the [data] filters "
                             f"(known = {data.known!r})")
        return out

    def subset(self, editor: EditorConfig) -> list[int]:
        """Indices (into :meth:`requests`) of the edits ``editor``'s trials make: all of
        them, or its ``subset``."""
        key = json.dumps(editor.subset, sort_keys=True)
        if key not in self._subsets:
            reqs = self.requests()
            filters = editor.subset_filters(self.config.data.source)
            if filters is None:
                self._subsets[key] = list(range(len(reqs)))
            else:
                index = {r.case_id: i for i, r in enumerate(reqs)}
                self._subsets[key] = [index[r.case_id] for r in select_requests(reqs, filters)]
        return self._subsets[key]

    def heldout_windows(self) -> list[list[int]]:
        """Token windows of the held-out text (the health suite's perplexity)."""
        if self._windows is None:
            from corredit.evaluate.health import heldout_windows
            from corredit.stats.sources import read_texts

            cfg = self.config.health
            self._windows = heldout_windows(self.handle().tokenizer,
                                            read_texts(cfg.texts, "heldout", cfg.clean),
                                            max_tokens=cfg.max_tokens, max_length=cfg.max_length)
        return self._windows

    # -- statistics and embeddings -------------------------------------------------------
    def editor(self, e: EditorConfig) -> Any:
        """A fresh editor of entry ``e`` with its hyperparameter overrides."""
        from corredit.editors import get_editor

        return get_editor(e.name)(dict(e.hparams) or None)

    def stats(self, extra_layers: Iterable[int] = ()) -> dict[int, Any]:
        """Second moments at every layer an editor with ``stats = true`` edits (and
        ``extra_layers``), computed once on the unedited model through the cache."""
        h = self.handle()
        layers: set[int] = set(int(x) for x in extra_layers)
        for e in self.config.editors:
            if e.stats:
                hp = self.editor(e).hparams_for(h)
                layers.update(int(x) for x in getattr(hp, "layers", ()))
        have = set(self._stats or {})
        if layers - have:
            from corredit.stats import StatsCache
            from corredit.stats.sources import make_corpus

            cfg = self.config.stats
            cache = StatsCache(self.cache_dir / "stats", batch_size=cfg.batch_size,
                               max_length=cfg.max_length, progress=self.progress)
            corpus = make_corpus(cfg.corpus, handle=h, split=cfg.split, clean=cfg.clean)
            got = cache.get(h, sorted(layers | have), corpus, cfg.max_tokens)
            self._stats = {**(self._stats or {}), **got}
        return dict(self._stats or {})

    def embeddings(self) -> dict[str, np.ndarray]:
        """Every configured embedding of the run's edits, rows of unit length."""
        if self._embeddings is None:
            from corredit.embed import EMBEDDERS, EmbeddingCache, embed_requests

            reqs = self.requests()
            cache = EmbeddingCache(self.cache_dir / "embeddings")
            out: dict[str, np.ndarray] = {}
            for emb in progress_bar(self.config.embeddings, enabled=self.progress,
                                    desc="embeddings", leave=False):
                cls = EMBEDDERS.get(emb.embedder)
                X = embed_requests(reqs, cls(**self._embedder_kwargs(cls, emb)), cache=cache,
                                   dataset=self.config.data.dataset_name)
                X = np.asarray(X, dtype=np.float64)
                norms = np.linalg.norm(X, axis=1, keepdims=True)
                out[emb.name] = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
            self._embeddings = out
        return self._embeddings

    def _embedder_kwargs(self, cls: type, emb: Any) -> dict[str, Any]:
        accepted = inspect.signature(cls).parameters
        kwargs = {**emb.params, "field": emb.field}
        if "handle" in accepted:
            kwargs["handle"] = self.handle()
        if "editor" in accepted and "hparams" in accepted and "hparams" not in kwargs:
            editor = kwargs.get("editor", accepted["editor"].default)
            for e in self.config.editors:
                if e.name == editor and e.hparams:
                    kwargs["hparams"] = dict(e.hparams)
                    break
        if "second_moment" in accepted and kwargs.get("second_moment") is None:
            layer = int(cls(**kwargs).resolved_layer())
            kwargs["second_moment"] = self.stats([layer])[layer]
        return kwargs

    # -- schedules and shared values -----------------------------------------------------
    def schedule(self, editor: EditorConfig, scheduler: str, batch_size: int, seed: int) -> Any:
        """The schedule of one (scheduler, batch size, seed) over ``editor``'s edits (its
        indices are positions in ``[requests()[i] for i in subset(editor)]``); shared by
        the editors with the same edits."""
        key = (json.dumps(editor.subset, sort_keys=True), scheduler, batch_size, seed)
        if key not in self._schedules:
            from corredit.schedule import make_schedule

            idx = self.subset(editor)
            reqs = self.requests()
            emb = self.config.schedule_embedding
            X = self.embeddings()[emb][idx] if emb is not None else None
            params = dict(self.config.schedule.params.get(scheduler, {}))
            self._schedules[key] = make_schedule(scheduler, [reqs[i] for i in idx], batch_size,
                                                 embeddings=X, seed=seed, **params)
        return self._schedules[key]

    def forget_values(self) -> None:
        """Drop the shared value vectors held so far (they are recomputed on demand)."""
        self._values.clear()

    @staticmethod
    def shares_values(editor_config: EditorConfig, editor: Any, batch_size: int) -> bool:
        """Whether trials of ``editor_config`` at ``batch_size`` use values optimised once on
        the unedited model: batch mode, ``share_values`` on, an editor that precomputes
        values, and batches whose values do not depend on their batch mates' edits."""
        return (editor_config.mode == "batch" and editor_config.share_values
                and editor.precomputes_values
                and (batch_size == 1 or not editor.sequential_within_batch))

    def shared_values(self, editor_config: EditorConfig, editor: Any, seed: int,
                      batch_size: int) -> Any:
        """Value vectors of all ``editor_config``'s edits, optimised once on the unedited
        model for seed ``seed``, or None when :meth:`shares_values` says no; see
        :class:`~corredit.config.EditorConfig`."""
        if not self.shares_values(editor_config, editor, batch_size):
            return None
        key = (editor_config.column, seed)
        if key not in self._values:
            reqs = self.requests()
            mine = [reqs[i] for i in self.subset(editor_config)]
            stats = self.stats() if editor_config.stats else None
            self._values[key] = editor.precompute_values(self.handle(), mine, stats=stats,
                                                         seed=seed)
        return self._values[key]
