"""The experiment runner: a config's grid of trials, each schedule -> edit -> evaluate ->
restore, written to a run folder one finished trial at a time.

Usage::

    from corredit.config import load_config
    from corredit.runner import Runner, run_experiment, SUITES
    folder = run_experiment(load_config("corredit/configs/demo.toml"), "runs/demo")
    folder.read_results()                       # the tidy long table (corredit.results)

    runner = Runner(config, "runs/x", handle=h)  # an already loaded model (tests, notebooks)
    runner.run()                                 # resumes: finished trials are not redone
    run_experiment(config, "runs/x", workers=2)  # trials in two processes, the same rows

A trial: the schedule of its scheduler / batch size / seed over its editor's edits (all
the run's, or the editor's ``subset``); its editor applies the batches in its mode; the
suites (``[evaluate] suites``, names in :data:`SUITES`) turn each measurement into tidy
rows; the edited parameters are put back from a snapshot and a checksum of them must
equal the one taken before the trial. Row conventions (``step``, ``batch``, suites) are
those of :mod:`corredit.results`. Each trial's rows are written atomically once it ends,
so a killed run loses at most the trials in flight.

Work done once per run and shared by the trials: the edits, second moments and
embeddings (cached on disk under ``cache_dir``), the correlation graph, the scores of the
unedited model, and, in mode ``batch``, the editors' per-fact value vectors (see
:class:`~corredit.config.EditorConfig` ``share_values``).

Suites plug in by name::

    @SUITES.register("my_suite")
    class MySuite(Suite):
        def measure(self, ctx, point):          # the model after step point.step
            return pd.DataFrame({...})          # case_id, prompt_kind, prompt_index, metric, value

or, for a function scoring cases, ``register_case_suite("zsre", score_zsre)`` with
``score_zsre(h, requests, batch_size=64) -> rows``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from corredit.paths import cache_root
from corredit.config import EditorConfig, RunConfig, TrialSpec
from corredit.registry import Registry
from corredit.results import RESULT_COLUMNS, RunFolder, atomic_write_parquet, atomic_write_text
from corredit.types import EditRequest

__all__ = [
    "Runner",
    "run_experiment",
    "SUITES",
    "Suite",
    "CaseSuite",
    "register_case_suite",
    "get_suite",
    "TrialContext",
    "MeasurePoint",
    "select_requests",
    "retention_checkpoints",
    "param_checksum",
    "heldout_windows",
    "code_version",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

#: Evaluation suites by name; ``[evaluate] suites`` lists the ones a run uses.
SUITES: Registry[type["Suite"]] = Registry(
    "suite", hint="register one with @corredit.runner.SUITES.register(name) or "
                  "corredit.runner.register_case_suite(name, fn)")

_ROW_COLUMNS = ("step", "batch", "case_id", "prompt_kind", "prompt_index", "metric", "value")


# -- small pure pieces -------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """The cache root (:func:`corredit.paths.cache_root`); statistics and embeddings live below."""
    return cache_root()


def code_version() -> str:
    """The package version, plus the git commit of the checkout it runs from when there is
    one (``0.1.0+g1a2b3c4``, ``-dirty`` when files under ``corredit/`` are modified)."""
    import corredit

    version = corredit.__version__
    pkg = Path(corredit.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=pkg,
                                capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return version
        version += f"+g{commit.stdout.strip()}"
        status = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=pkg,
                                capture_output=True, text=True, timeout=5)
        if status.returncode == 0 and status.stdout.strip():
            version += "-dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def select_requests(requests: Sequence[EditRequest], data: Any) -> list[EditRequest]:
    """The edits a run makes: ``requests`` filtered as ``data`` (a
    :class:`~corredit.config.DataConfig`) says, in input order; case ids must be unique.

    Example: ``select_requests(reqs, DataConfig(min_facts_per_subject=3, n_subjects=80))``.
    """
    reqs = list(requests)
    seen: set[str] = set()
    for r in reqs:
        if r.case_id in seen:
            raise ValueError(f"data source {data.source!r}: case_id {r.case_id!r} appears twice")
        seen.add(r.case_id)
    if data.relations is not None:
        reqs = [r for r in reqs if r.relation_id in set(data.relations)]
    if data.subject_first is not None:
        reqs = [r for r in reqs if r.subject_first == data.subject_first]
    rng = np.random.default_rng(data.seed)
    by_subject: dict[str, list[int]] = {}
    for i, r in enumerate(reqs):
        by_subject.setdefault(r.subject, []).append(i)
    keep_subjects = [s for s, idx in by_subject.items() if len(idx) >= data.min_facts_per_subject]
    if data.n_subjects is not None and data.n_subjects < len(keep_subjects):
        pick = np.sort(rng.choice(len(keep_subjects), size=data.n_subjects, replace=False))
        keep_subjects = [keep_subjects[i] for i in pick]
    keep: list[int] = []
    for s in keep_subjects:
        idx = by_subject[s]
        if data.max_facts_per_subject is not None and len(idx) > data.max_facts_per_subject:
            pick = np.sort(rng.choice(len(idx), size=data.max_facts_per_subject, replace=False))
            idx = [idx[i] for i in pick]
        keep += idx
    keep.sort()
    if data.max_edits is not None and data.max_edits < len(keep):
        pick = np.sort(rng.choice(len(keep), size=data.max_edits, replace=False))
        keep = [keep[i] for i in pick]
    out = [reqs[i] for i in keep]
    if not out:
        raise ValueError(f"data source {data.source!r}: no edit passes the [data] filters "
                         f"(relations={data.relations}, subject_first={data.subject_first}, "
                         f"min_facts_per_subject={data.min_facts_per_subject})")
    return out


def retention_checkpoints(n_steps: int, *, every: int = 0, points: int = 4) -> list[int]:
    """Steps (0-based) at which a sequential trial re-scores every earlier case: every
    ``every`` steps when ``every > 0``, else ``points`` evenly spaced steps; the last
    step always.

    Example: ``retention_checkpoints(10, every=4)`` -> ``[3, 7, 9]``;
    ``retention_checkpoints(10, points=2)`` -> ``[4, 9]``.
    """
    if n_steps <= 0:
        return []
    if every > 0:
        steps = set(range(every - 1, n_steps, every))
    elif points > 0:
        steps = {int(math.ceil((k + 1) * n_steps / points)) - 1 for k in range(points)}
    else:
        steps = set()
    steps.add(n_steps - 1)
    return sorted(s for s in steps if 0 <= s < n_steps)


def param_checksum(model: Any, names: Iterable[str]) -> str:
    """A cheap checksum of the bits of the named parameters: per tensor, the sum and a
    position-weighted sum of its values read as integers (any changed bit changes it)."""
    import torch

    params = dict(model.named_parameters())
    int_of = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    h = hashlib.sha256()
    with torch.no_grad():
        for name in sorted(names):
            t = params[name].detach().reshape(-1)
            bits = t.view(int_of[t.element_size()]).to(torch.int64)
            weights = torch.arange(bits.numel(), device=bits.device, dtype=torch.int64) % 65521 + 1
            h.update(f"{name}:{tuple(params[name].shape)}:{int(bits.sum())}:"
                     f"{int((bits * weights).sum())};".encode())
    return h.hexdigest()[:16]


def heldout_windows(tokenizer: Any, texts: Sequence[str], *, max_tokens: int,
                    max_length: int) -> list[list[int]]:
    """Token windows of held-out text: the texts tokenised, joined by the EOS token,
    cut to ``max_tokens`` tokens and split into windows of ``max_length``."""
    sep = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        if not text.strip():
            continue
        if ids and sep is not None:
            ids.append(int(sep))
        ids += list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= max_tokens:
            break
    ids = ids[:max_tokens]
    windows = [ids[s:s + max_length] for s in range(0, len(ids), max_length)]
    windows = [w for w in windows if len(w) >= 2]
    if not windows:
        raise ValueError("held-out texts: fewer than 2 tokens, no perplexity to measure")
    return windows


# -- suites ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeasurePoint:
    """One measurement of a trial: the model after step ``step``; ``cases`` are the
    request indices to score; ``checkpoint`` is True where the whole model is measured
    (every step in mode batch, the retention checkpoints otherwise), ``index`` counts the
    checkpoints so far (0-based), ``last`` marks the trial's last step."""

    step: int
    cases: tuple[int, ...]
    checkpoint: bool
    index: int
    last: bool


@dataclass
class TrialContext:
    """What a suite may read during one trial (the model ``handle`` is in the state the
    hook describes)."""

    runner: "Runner"
    spec: TrialSpec
    handle: Any
    requests: list[EditRequest]
    schedule: Any
    batch_of: np.ndarray
    embeddings: Mapping[str, np.ndarray]
    param_names: list[str]
    original: Mapping[str, Any]
    config: RunConfig

    def __post_init__(self) -> None:
        self.case_index = {r.case_id: i for i, r in enumerate(self.requests)}

    def cases(self, indices: Iterable[int]) -> list[EditRequest]:
        """The requests at ``indices``."""
        return [self.requests[i] for i in indices]

    def rows(self, frame: pd.DataFrame, *, step: int, batch: Any = None) -> pd.DataFrame:
        """``frame`` with ``step`` set and ``batch`` from each row's case (or the given
        value)."""
        out = frame.copy()
        out["step"] = step
        if batch is None:
            index = self.case_index
            out["batch"] = [int(self.batch_of[index[c]]) for c in out["case_id"]]
        else:
            out["batch"] = batch
        return out


class Suite:
    """An evaluation suite: hooks the runner calls during a trial, each returning tidy
    rows (``case_id, prompt_kind, prompt_index, metric, value`` plus ``step`` and
    ``batch``; ``suite`` defaults to the suite's name) or None.

    ``before`` runs on the unedited model (rows at step -1), ``after_edit`` right after a
    batch is applied (with its :class:`~corredit.editors.EditResult`), ``measure`` at each
    :class:`MeasurePoint`. A suite instance lives for one run; state on it is allowed.
    """

    name: str = ""

    def before(self, ctx: TrialContext) -> pd.DataFrame | None:
        return None

    def after_edit(self, ctx: TrialContext, step: int, batch: Sequence[int],
                   result: Any) -> pd.DataFrame | None:
        return None

    def measure(self, ctx: TrialContext, point: MeasurePoint) -> pd.DataFrame | None:
        return None


class CaseSuite(Suite):
    """A suite from a function ``score(h, requests, batch_size=...) -> rows`` (case_id,
    prompt_kind, prompt_index, metric, value): the trial's cases are scored at every
    measurement point and, with ``pre_edit``, on the unedited model (computed once per
    run for all its edits and shared by its trials)."""

    score: Callable[..., pd.DataFrame]

    def __init__(self) -> None:
        self._pre: pd.DataFrame | None = None

    def _score(self, ctx: TrialContext, requests: Sequence[EditRequest]) -> pd.DataFrame:
        cfg = ctx.config.evaluate
        return type(self).score(ctx.handle, list(requests), batch_size=cfg.batch_size)

    def before(self, ctx: TrialContext) -> pd.DataFrame | None:
        if not ctx.config.evaluate.pre_edit:
            return None
        if self._pre is None:  # every trial starts from the same unedited model
            self._pre = self._score(ctx, ctx.runner.requests())
        mine = self._pre[self._pre["case_id"].astype(str).isin(ctx.case_index)]
        return ctx.rows(mine.reset_index(drop=True), step=-1)

    def measure(self, ctx: TrialContext, point: MeasurePoint) -> pd.DataFrame | None:
        if not point.cases:
            return None
        return ctx.rows(self._score(ctx, ctx.cases(point.cases)), step=point.step)


def register_case_suite(name: str, score: Callable[..., pd.DataFrame], *,
                        replace: bool = False) -> type[CaseSuite]:
    """Register a :class:`CaseSuite` scoring cases with ``score``; returns its class."""
    cls = type(f"{name.title().replace('_', '')}Suite", (CaseSuite,),
               {"name": name, "score": staticmethod(score)})
    SUITES.add(name, cls, replace=replace)
    return cls


def get_suite(name: str) -> type[Suite]:
    """The suite class registered as ``name``."""
    return SUITES.get(name)


def _score_probability(h: Any, requests: Sequence[EditRequest], batch_size: int = 64) -> pd.DataFrame:
    from corredit.evaluate import score_probability

    return score_probability(h, requests, batch_size=batch_size)


register_case_suite("probability", _score_probability)


@SUITES.register("correlation")
class CorrelationSuite(Suite):
    """Per case, against the other edits of its batch: ``max_sim:<embedding>`` and
    ``mean_sim:<embedding>`` (cosine; NaN for a batch of one) for every embedding of the
    run, and ``same_subject_in_batch``."""

    name = "correlation"

    def after_edit(self, ctx: TrialContext, step: int, batch: Sequence[int],
                   result: Any) -> pd.DataFrame:
        idx = np.asarray(batch, dtype=np.int64)
        case_ids = [ctx.requests[i].case_id for i in idx]
        records: list[tuple[str, str, float]] = []
        for name, X in ctx.embeddings.items():
            if len(idx) > 1:
                S = X[idx] @ X[idx].T
                np.fill_diagonal(S, np.nan)
                max_sim = np.nanmax(S, axis=1)
                mean_sim = np.nanmean(S, axis=1)
            else:
                max_sim = mean_sim = np.full(len(idx), np.nan)
            records += [(c, f"max_sim:{name}", float(v)) for c, v in zip(case_ids, max_sim)]
            records += [(c, f"mean_sim:{name}", float(v)) for c, v in zip(case_ids, mean_sim)]
        subjects = [ctx.requests[i].subject for i in idx]
        counts = pd.Series(subjects).value_counts()
        records += [(c, "same_subject_in_batch", float(counts[s] - 1))
                    for c, s in zip(case_ids, subjects)]
        frame = pd.DataFrame(records, columns=["case_id", "metric", "value"])
        frame["prompt_kind"] = "case"
        frame["prompt_index"] = 0
        return ctx.rows(frame, step=step, batch=step)


@SUITES.register("health")
class HealthSuite(Suite):
    """Model health: ``perplexity`` on held-out text before any edit and at checkpoints
    (every ``[health] every``-th, and the last), and ``norm_growth`` of every edited
    matrix after each step (``||W|| / ||W_orig||``, prompt_kind = parameter name)."""

    name = "health"

    def __init__(self) -> None:
        self._before: float | None = None
        self._norms: dict[str, float] = {}

    def _ppl(self, ctx: TrialContext) -> float:
        cfg = ctx.config.health
        from corredit.evaluate import token_perplexity

        return token_perplexity(ctx.handle, ctx.runner.heldout_windows(), batch_size=cfg.batch_size)

    @staticmethod
    def _frame(records: list[tuple[str, str, float]], step: int, batch: int) -> pd.DataFrame:
        frame = pd.DataFrame(records, columns=["prompt_kind", "metric", "value"])
        frame["case_id"] = ""
        frame["prompt_index"] = 0
        frame["step"] = step
        frame["batch"] = batch
        return frame

    def before(self, ctx: TrialContext) -> pd.DataFrame:
        if self._before is None:
            self._before = self._ppl(ctx)
        return self._frame([("model", "perplexity", self._before)], -1, -1)

    def after_edit(self, ctx: TrialContext, step: int, batch: Sequence[int],
                   result: Any) -> pd.DataFrame:
        params = dict(ctx.handle.model.named_parameters())
        records = []
        for name in ctx.param_names:
            if name not in self._norms:
                self._norms[name] = float(ctx.original[name].double().norm())
            now = float(params[name].detach().double().norm())
            records.append((name, "norm_growth", now / max(self._norms[name], 1e-30)))
        return self._frame(records, step, step)

    def measure(self, ctx: TrialContext, point: MeasurePoint) -> pd.DataFrame | None:
        every = ctx.config.health.every
        if not point.checkpoint or not (point.last or point.index % every == 0):
            return None
        return self._frame([("model", "perplexity", self._ppl(ctx))], point.step, point.step)


#: Per-case diagnostics renamed to the shared names of the row conventions.
_DIAGNOSTIC_NAMES = {"v_loss": "loss", "ft_loss": "loss"}


def _is_number(x: Any) -> bool:
    return isinstance(x, (bool, int, float, np.integer, np.floating, np.bool_))


@SUITES.register("diagnostics")
class DiagnosticsSuite(Suite):
    """Rows from each :class:`~corredit.editors.EditResult`: per-case lists (``loss``,
    ``delta_norm``, ...) as case rows, per-parameter numbers (``update_norm``, ...) with
    prompt_kind = parameter name, and plain numbers with prompt_kind ``"edit"``."""

    name = "diagnostics"

    def after_edit(self, ctx: TrialContext, step: int, batch: Sequence[int],
                   result: Any) -> pd.DataFrame | None:
        diag = dict(getattr(result, "diagnostics", {}) or {})
        case_ids = [str(c) for c in diag.get("case_id", getattr(result, "case_ids", []))]
        n = len(case_ids)
        per_case: list[tuple[str, str, str, float]] = []
        other: list[tuple[str, str, str, float]] = []
        for key, value in diag.items():
            if key == "case_id" or "history" in key:
                continue
            metric = _DIAGNOSTIC_NAMES.get(key, key)
            if isinstance(value, (list, tuple)) and len(value) == n and n > 0 \
                    and all(_is_number(v) for v in value):
                per_case += [(c, "case", metric, float(v)) for c, v in zip(case_ids, value)]
            elif isinstance(value, Mapping) and value and all(_is_number(v) for v in value.values()):
                other += [("", str(k), metric, float(v)) for k, v in value.items()]
            elif _is_number(value):
                other.append(("", "edit", metric, float(value)))
        if not per_case and not other:
            return None
        frame = pd.DataFrame(per_case + other,
                             columns=["case_id", "prompt_kind", "metric", "value"])
        frame["prompt_index"] = 0
        frame["step"] = step
        frame["batch"] = step
        return frame


# -- the runner --------------------------------------------------------------------------------

def _progress(iterable: Iterable, *, enabled: bool, **kwargs: Any) -> Iterable:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, **kwargs)


class Runner:
    """Runs a :class:`~corredit.config.RunConfig` into the run folder ``out`` (see the
    module docstring). ``handle``: an already loaded model to use instead of loading
    ``config.model``; ``progress``: override ``config.progress``; ``workers``: run the
    trials in that many processes (each loads the model; the statistics and embeddings
    are computed once, first, and read from the cache), which gives the same rows."""

    def __init__(self, config: RunConfig, out: str | os.PathLike[str], *, handle: Any = None,
                 progress: bool | None = None, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.config = config
        self.folder = RunFolder(out)
        self.progress = config.progress if progress is None else bool(progress)
        self.workers = int(workers)
        self._own_model = handle is None  # workers can load the model themselves
        self.cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else \
            default_cache_dir()
        self.code_version = code_version()
        self._handle = handle
        self._world: Any = None
        self._requests: list[EditRequest] | None = None
        self._subsets: dict[str, list[int]] = {}
        self._values: dict[tuple[str, int], Any] = {}
        self._stats: dict[int, Any] | None = None
        self._embeddings: dict[str, np.ndarray] | None = None
        self._windows: list[list[int]] | None = None
        self._schedules: dict[tuple[str, str, int, int], Any] = {}
        self._suites: list[Suite] | None = None

    # -- inputs ------------------------------------------------------------------------
    def world(self) -> Any:
        """The embedded world (loaded once)."""
        if self._world is None:
            from corredit.world import load_world

            self._world = load_world()
        return self._world

    def handle(self) -> Any:
        """The model handle (loaded once)."""
        if self._handle is None:
            from corredit.models import load

            self._handle = load(self.config.model, device=self.config.device,
                                dtype=self.config.dtype)
        return self._handle

    def requests(self) -> list[EditRequest]:
        """The run's edits (loaded and selected once)."""
        if self._requests is None:
            data = self.config.data
            if data.source == "world":
                w = self.world()
                accepted = inspect.signature(w.requests).parameters
                wanted = {"relations": data.relations, "subject_first": data.subject_first,
                          "seed": data.seed}
                kwargs = {k: v for k, v in wanted.items()
                          if k in accepted and (v is not None or k == "seed")}
                if "relations" in kwargs:
                    kwargs["relations"] = list(kwargs["relations"])
                raw = w.requests(**kwargs)
            else:
                from corredit.data import load_dataset

                res = load_dataset(data.source, format=data.format, **data.options)
                if res.n_set_aside:
                    log.warning("%s", res.problem_report(limit=5))
                raw = res.requests
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
        path = self.folder.root / "known.parquet"
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
            table = sel.table.assign(selection=tag)
            self.folder.root.mkdir(parents=True, exist_ok=True)
            atomic_write_parquet(table, path)
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

    def _texts(self, source: str, what: str) -> list[str]:
        if source == "world":
            w = self.world()
            return list(w.stats_texts() if what == "stats" else w.heldout_texts())
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{self.config.name}: {what} texts {source!r}: no such file")
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def _corpus(self) -> Any:
        from corredit.stats import TextFileCorpus, TextsCorpus

        cfg = self.config.stats
        src = cfg.corpus
        if src == "world":
            return TextsCorpus(self._texts("world", "stats"))
        if src == "model" or src.startswith("model:"):
            from corredit.stats.sampled import ModelSampleCorpus

            sizes = [int(x) for x in src.split(":")[1:]]
            n_docs, length = (sizes + [256, 128][len(sizes):])[:2]
            return ModelSampleCorpus(self.handle(), n_docs=n_docs, length=length, seed=0)
        if src.startswith("hf:"):
            from corredit.stats import HFDatasetCorpus

            name, config, split = (src[3:].split(":") + [None, None])[:3]
            return HFDatasetCorpus(name, config=config or None, split=split or "train")
        if not Path(src).expanduser().is_file():
            raise FileNotFoundError(f"stats.corpus: {src!r}: no such file")
        return TextFileCorpus(str(Path(src).expanduser()), split=cfg.split, clean=cfg.clean)

    def heldout_windows(self) -> list[list[int]]:
        """Token windows of the held-out text (the health suite's perplexity)."""
        if self._windows is None:
            cfg = self.config.health
            self._windows = heldout_windows(self.handle().tokenizer, self._texts(cfg.texts, "held-out"),
                                            max_tokens=cfg.max_tokens, max_length=cfg.max_length)
        return self._windows

    def _editor(self, e: EditorConfig) -> Any:
        from corredit.editors import get_editor

        return get_editor(e.name)(dict(e.hparams) or None)

    def stats(self, extra_layers: Iterable[int] = ()) -> dict[int, Any]:
        """Second moments at every layer an editor with ``stats = true`` edits (and
        ``extra_layers``), computed once on the unedited model through the cache."""
        h = self.handle()
        layers: set[int] = set(int(x) for x in extra_layers)
        for e in self.config.editors:
            if e.stats:
                hp = self._editor(e).hparams_for(h)
                layers.update(int(x) for x in getattr(hp, "layers", ()))
        have = set(self._stats or {})
        if layers - have:
            from corredit.stats import StatsCache

            cfg = self.config.stats
            cache = StatsCache(self.cache_dir / "stats", batch_size=cfg.batch_size,
                               max_length=cfg.max_length, progress=self.progress)
            got = cache.get(h, sorted(layers | have), self._corpus(), cfg.max_tokens)
            self._stats = {**(self._stats or {}), **got}
        return dict(self._stats or {})

    def embeddings(self) -> dict[str, np.ndarray]:
        """Every configured embedding of the run's edits, rows of unit length."""
        if self._embeddings is None:
            from corredit.embed import EMBEDDERS, EmbeddingCache, embed_requests

            reqs = self.requests()
            cache = EmbeddingCache(self.cache_dir / "embeddings")
            out: dict[str, np.ndarray] = {}
            for emb in _progress(self.config.embeddings, enabled=self.progress,
                                 desc="embeddings", leave=False):
                cls = EMBEDDERS.get(emb.embedder)
                kwargs = self._embedder_kwargs(cls, emb)
                X = embed_requests(reqs, cls(**kwargs), cache=cache,
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
            probe = cls(**kwargs)
            layer = int(probe.resolved_layer())
            kwargs["second_moment"] = self.stats([layer])[layer]
        return kwargs

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
            h = self.handle()
            reqs = self.requests()
            mine = [reqs[i] for i in self.subset(editor_config)]
            stats = self.stats() if editor_config.stats else None
            self._values[key] = editor.precompute_values(h, mine, stats=stats, seed=seed)
        return self._values[key]

    def suites(self) -> list[Suite]:
        """One instance of every configured suite (kept for the whole run)."""
        if self._suites is None:
            self._suites = [get_suite(name)() for name in self.config.evaluate.suites]
        return self._suites

    # -- the run -----------------------------------------------------------------------
    def write_config(self) -> None:
        """Write ``config.json`` (the config plus ``code_version``); a folder holding
        another configuration is refused, a different code version only logged."""
        record = {**self.config.to_dict(), "code_version": self.code_version}
        path = self.folder.root / "config.json"
        if path.exists():
            old = self.folder.read_config()
            old_version = old.pop("code_version", None)
            if old != self.config.to_dict():
                changed = sorted(k for k in set(old) | set(record) - {"code_version"}
                                 if old.get(k) != record.get(k))
                raise ValueError(
                    f"{path}: this run folder holds another configuration (differs in "
                    f"{', '.join(changed)}); use a new output folder or delete this one")
            if old_version != self.code_version:
                log.warning("%s: resuming a run started with code version %s under %s",
                            self.folder.root, old_version, self.code_version)
            return
        self.folder.write_config(record)

    def write_inputs(self) -> None:
        """The edits (``edits.jsonl``) and the correlation graph (``graph_edges.parquet``)."""
        root = self.folder.root
        edits = root / "edits.jsonl"
        if not edits.exists():
            atomic_write_text("".join(json.dumps(r.to_dict(), sort_keys=True) + "\n"
                                      for r in self.requests()), edits)
        name = self.config.graph_embedding
        path = root / "graph_edges.parquet"
        if name is not None and not path.exists():
            from corredit.graph import knn_graph, threshold_graph, to_edge_frame

            reqs, X = self.requests(), self.embeddings()
            g = self.config.graph
            if g.threshold is not None:
                G = threshold_graph(reqs, X, threshold=g.threshold, on=name)
            else:
                G = knn_graph(reqs, X, k=max(1, min(g.k, len(reqs) - 1)), on=name,
                              mutual=g.mutual)
            atomic_write_parquet(to_edge_frame(G), path)

    def run(self) -> RunFolder:
        """Run every unfinished trial, then write ``results.parquet``; returns the folder."""
        import torch

        threads = torch.get_num_threads()
        if self.config.threads is not None:
            torch.set_num_threads(self.config.threads)
        try:
            return self._run()
        finally:
            torch.set_num_threads(threads)

    def _run(self) -> RunFolder:
        self.config.check_names()
        self.folder.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        trials = self.config.trials()
        done = self.folder.finished_trials()
        todo = [t for t in trials if t.name not in done]
        self.folder.log("run_start", trials=len(trials), finished=len(trials) - len(todo),
                        code_version=self.code_version)
        started = time.perf_counter()
        if todo or not (self.folder.root / "edits.jsonl").exists():
            self.write_inputs()
        if self.workers > 1 and len(todo) > 1 and self._own_model:
            self._run_parallel(todo)
        else:
            for spec in _progress(todo, enabled=self.progress, desc="trials", unit="trial"):
                self.run_trial(spec)
        path = self.folder.consolidate()
        self.folder.log("run_end", trials=len(trials), ran=len(todo),
                        seconds=round(time.perf_counter() - started, 3), results=str(path))
        return self.folder

    def work_groups(self, todo: Sequence[TrialSpec]) -> list[list[TrialSpec]]:
        """``todo`` as groups of trials to run in one process, the likely longest first:
        the batch-mode trials of an editor and seed that share value vectors form one
        group (the vectors are optimised once per group), every other trial is its own.
        Rough cost per edit: an edit of the evolving model and its scoring in sequential
        modes 4, a shared value vector 1 plus 0.2 per trial, an independent batch 0.5."""
        groups: dict[Any, list[TrialSpec]] = {}
        weight: dict[Any, float] = {}
        for t in todo:
            n = len(self.subset(t.editor))
            shared = self.shares_values(t.editor, self._editor(t.editor), t.batch_size)
            key = (t.editor.column, t.seed) if shared else t.name
            groups.setdefault(key, []).append(t)
            if shared:
                weight[key] = weight.get(key, float(n)) + 0.2 * n
            else:
                weight[key] = (0.5 if t.editor.mode == "batch" else 4.0) * n
        order = sorted(groups, key=lambda k: -weight[k])
        return [groups[k] for k in order]

    def _run_parallel(self, todo: list[TrialSpec]) -> None:
        """Run ``todo`` in ``self.workers`` processes that take :meth:`work_groups` from
        a queue; the shared inputs (statistics, embeddings) are cached first."""
        import concurrent.futures as cf
        import multiprocessing

        if any(e.stats for e in self.config.editors):
            self.stats()
        self.embeddings()
        groups = self.work_groups(todo)
        n = min(self.workers, len(groups))
        ctx = multiprocessing.get_context("spawn")
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"trials ({n} workers)", unit="trial",
                       file=sys.stderr, dynamic_ncols=True)
        names = {t.name for t in todo}
        config = self.config.to_dict()
        with ctx.Manager() as manager:
            queue = manager.Queue()
            for g in groups:
                queue.put([t.name for t in g])
            with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
                futures = [pool.submit(_run_queue, config, str(self.folder.root), queue)
                           for _ in range(n)]
                pending = set(futures)
                while pending:
                    _, pending = cf.wait(pending, timeout=1.0)
                    if bar is not None:
                        bar.update(len(self.folder.finished_trials() & names) - bar.n)
                if bar is not None:
                    bar.close()
                for f in futures:
                    f.result()  # a worker's error surfaces here

    def run_trial(self, spec: TrialSpec) -> pd.DataFrame:
        """Run one trial, write it to the run folder and return its rows."""
        import torch
        from corredit.models import restore, snapshot

        h = self.handle()
        idx = self.subset(spec.editor)
        all_reqs = self.requests()
        reqs = [all_reqs[i] for i in idx]
        stats = self.stats() if spec.editor.stats else None
        schedule = self.schedule(spec.editor, spec.scheduler, spec.batch_size, spec.seed)
        editor = self._editor(spec.editor)
        names = list(editor.declared_parameters(h))
        original = snapshot(h.model, names)
        checksum = param_checksum(h.model, names)
        values = self.shared_values(spec.editor, editor, spec.seed, spec.batch_size)
        ctx = TrialContext(runner=self, spec=spec, handle=h, requests=reqs, schedule=schedule,
                           batch_of=schedule.batch_of(),
                           embeddings={k: X[idx] for k, X in self.embeddings().items()},
                           param_names=names, original=original, config=self.config)
        n_steps = schedule.n_batches
        mode = spec.editor.mode
        self.folder.log("trial_start", trial=spec.name, n_edits=schedule.n_edits,
                        n_steps=n_steps, mode=mode, pid=os.getpid())
        started = time.perf_counter()
        torch.manual_seed(spec.seed)
        frames: list[pd.DataFrame | None] = []
        suites = self.suites()
        for suite in suites:
            frames.append(_tag(suite.before(ctx), suite))
        checkpoints = set(range(n_steps)) if mode == "batch" else set(retention_checkpoints(
            n_steps, every=self.config.evaluate.retention_every,
            points=self.config.evaluate.retention_points))
        n_check = 0
        edit_seconds = 0.0
        try:
            steps = _progress(range(n_steps), enabled=self.progress, desc=spec.name,
                              unit="step", leave=False)
            for step in steps:
                batch = schedule.batches[step]
                t0 = time.perf_counter()
                result = editor.apply(
                    h, ctx.cases(batch), stats=stats, seed=spec.seed,
                    precomputed=None if values is None else values.select(list(batch)))
                edit_seconds += time.perf_counter() - t0
                for suite in suites:
                    frames.append(_tag(suite.after_edit(ctx, step, batch, result), suite))
                if step in checkpoints:
                    cases = tuple(batch) if mode == "batch" else tuple(
                        i for b in schedule.batches[:step + 1] for i in b)
                    point = MeasurePoint(step, cases, True, n_check, step == n_steps - 1)
                    n_check += 1
                else:
                    point = MeasurePoint(step, tuple(batch), False, n_check, False)
                for suite in suites:
                    frames.append(_tag(suite.measure(ctx, point), suite))
                if mode == "batch":
                    self._restore(h, original, names, checksum, spec, step)
        finally:
            restore(h.model, original)
        self._restore(h, original, names, checksum, spec, None)
        rows = self._assemble(spec, frames)
        self.folder.write_trial(spec.name, rows, schedule=schedule.to_frame())
        seconds = time.perf_counter() - started
        self.folder.log("trial_end", trial=spec.name, pid=os.getpid(), seconds=round(seconds, 3),
                        edit_seconds=round(edit_seconds, 3), n_edits=schedule.n_edits,
                        n_steps=n_steps, n_rows=len(rows), **_summary(rows))
        return rows

    def _restore(self, h: Any, original: Mapping[str, Any], names: list[str], checksum: str,
                 spec: TrialSpec, step: int | None) -> None:
        from corredit.models import restore

        restore(h.model, original)
        now = param_checksum(h.model, names)
        if now != checksum:
            where = "at the end" if step is None else f"after step {step}"
            raise RuntimeError(f"trial {spec.name}: the edited parameters {names} differ from "
                               f"their values before the trial {where} (checksum {now} != "
                               f"{checksum}); restore is not bit-exact")

    def _assemble(self, spec: TrialSpec, frames: list[pd.DataFrame | None]) -> pd.DataFrame:
        parts = [f for f in frames if f is not None and len(f)]
        if parts:
            rows = pd.concat(parts, ignore_index=True)
        else:
            rows = pd.DataFrame({c: [] for c in (*_ROW_COLUMNS, "suite")})
        for col, default in (("prompt_kind", ""), ("prompt_index", 0), ("case_id", "")):
            if col not in rows.columns:
                rows[col] = default
            rows[col] = rows[col].fillna(default)
        missing = [c for c in (*_ROW_COLUMNS, "suite") if c not in rows.columns]
        if missing:
            raise ValueError(f"trial {spec.name}: suite rows lack columns {missing}")
        cfg = self.config
        rows = rows.assign(run=cfg.name, trial=spec.name, model=cfg.model,
                           dataset=cfg.data.dataset_name, editor=spec.editor.column,
                           mode=spec.editor.mode, scheduler=spec.scheduler,
                           batch_size=spec.batch_size, seed=spec.seed,
                           code_version=self.code_version)
        rows["case_id"] = rows["case_id"].astype(str)
        rows["value"] = rows["value"].astype(float)
        return rows[[*RESULT_COLUMNS, "model", "dataset", "editor", "mode", "scheduler",
                     "batch_size", "seed", "code_version"]]


def _tag(frame: pd.DataFrame | None, suite: Suite) -> pd.DataFrame | None:
    if frame is None or not len(frame):
        return None
    if "suite" not in frame.columns:
        frame = frame.assign(suite=suite.name)
    else:
        frame = frame.assign(suite=frame["suite"].fillna(suite.name))
    return frame


def _summary(rows: pd.DataFrame) -> dict[str, float]:
    """Mean ES / PS / NS x100 of each case at its last measurement (for the log)."""
    p = rows[(rows["suite"] == "probability") & (rows["step"] >= 0)
             & rows["metric"].isin(["ES", "PS", "NS"])]
    if p.empty:
        return {}
    last = p.groupby(["case_id", "metric"])["step"].transform("max")
    p = p[p["step"] == last]
    per_case = p.groupby(["metric", "case_id"])["value"].mean()
    return {m: round(float(per_case[m].mean() * 100), 2) for m in ("ES", "PS", "NS")
            if m in per_case.index.get_level_values(0)}


def _run_queue(config: Mapping[str, Any], out: str, queue: Any) -> list[str]:
    """Worker process: take groups of trial names from ``queue`` until it is empty and
    run them into ``out``."""
    import queue as queue_module

    import torch

    cfg = RunConfig.from_dict(config, source=f"{out}/config.json")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    runner = Runner(cfg, out, progress=False)
    specs = {t.name: t for t in cfg.trials()}
    done: list[str] = []
    while True:
        try:
            group = queue.get_nowait()
        except queue_module.Empty:
            return done
        for name in group:
            runner.run_trial(specs[name])
            done.append(name)
        runner.forget_values()


def run_experiment(config: RunConfig, out: str | os.PathLike[str], *, handle: Any = None,
                   progress: bool | None = None, workers: int = 1) -> RunFolder:
    """Run ``config`` into the folder ``out`` (resuming what is there); returns it.

    Example: ``run_experiment(load_config("demo.toml"), "runs/demo").read_results()``;
    ``workers=2`` runs the trials in two processes (same rows).
    """
    return Runner(config, out, handle=handle, progress=progress, workers=workers).run()
