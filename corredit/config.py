"""Experiment configuration: a TOML file read into frozen, validated dataclasses, and the
grid of trials it describes.

Usage::

    from corredit.config import load_config, RunConfig
    cfg = load_config("corredit/configs/demo.toml")     # ValueError names file and key
    [t.name for t in cfg.trials()]                       # ['memit-random-b8-s0', ...]
    cfg.to_dict()                                        # plain JSON-ready dict (config.json)
    RunConfig.from_dict(cfg.to_dict()) == cfg            # True

A file looks like this (every table but ``[[editors]]`` is optional)::

    name = "demo"                  # the run's name (default: the file's stem)
    model = "world"                # corredit.models.load name or folder
    seeds = [0]                    # every trial runs once per seed
    threads = 1                    # torch CPU threads (default: torch's choice)
    # device, dtype: for corredit.models.load; cache_dir: statistics and embeddings
    # caches (default $CORREDIT_CACHE or ~/.cache/corredit); progress = false: no bars

    [data]
    source = "world"               # "world" or any path corredit.data.load_dataset reads
    relations = ["born_in", "occupation", "employer"]
    subject_first = true
    min_facts_per_subject = 3
    n_subjects = 80

    [[embeddings]]
    name = "subject_tfidf"         # correlation rows are named max_sim:subject_tfidf, ...
    embedder = "tfidf"
    field = "subject"

    [schedule]
    schedulers = ["correlated", "random", "decorrelated", "same_subject_together"]
    batch_sizes = [8, 32]
    embedding = "subject_tfidf"

    [[editors]]
    name = "memit"
    mode = "batch"                 # batch | sequential | sequential-batch
    hparams = { layers = [1, 2] }  # overrides of corredit/editors/defaults.toml

    [[editors]]
    name = "rome"
    mode = "sequential"

    [evaluate]                     # suites, scoring batch, retention checkpoints
    suites = ["probability", "correlation", "health", "diagnostics"]
    retention_points = 4

    [health]                       # perplexity on held-out text
    max_tokens = 4000

Tables ``[stats]`` (second-moment corpus and token budget) and ``[graph]`` (the kNN
correlation graph) complete the format; each dataclass below documents its keys.
The trials are editors x schedulers x batch sizes x seeds; an editor in mode
``sequential`` edits one fact per step, so its trials have batch size 1 whatever
``schedule.batch_sizes`` says. Torch-free: names of editors, schedulers, embedders and
suites are checked against their registries by :meth:`RunConfig.check_names`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, fields
from dataclasses import field as _field
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "MODES",
    "DataConfig",
    "StatsConfig",
    "EmbeddingConfig",
    "GraphConfig",
    "ScheduleConfig",
    "EditorConfig",
    "EvaluateConfig",
    "HealthConfig",
    "RunConfig",
    "TrialSpec",
    "load_config",
    "parse_config",
]

#: How an editor applies a schedule's batches (see corredit.results for the row conventions).
MODES: tuple[str, ...] = ("batch", "sequential", "sequential-batch")

#: Suites the runner evaluates when ``[evaluate] suites`` is not given.
DEFAULT_SUITES: tuple[str, ...] = ("probability", "correlation", "health", "diagnostics")


class _Invalid(ValueError):
    """A bad value at a key path; :func:`parse_config` adds the file name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


# -- generic conversion of TOML tables into dataclasses ----------------------------------------

def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_describe(a) for a in parts) + (" (or omitted)" if len(parts) < len(
            typing.get_args(tp)) else "")
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        return f"a list of {plural.get(inner, _describe(inner))}"
    if origin in (dict, Mapping):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except _Invalid:
                pass
        raise _Invalid(key, f"expected {_describe(tp)}, got {value!r}")
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _Invalid(key, f"expected {_describe(tp)}, got {value!r}")
        return tuple(_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _Invalid(key, f"expected a table, got {value!r}")
        return _plain_table(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Invalid(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(key, f"expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(key, f"expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise _Invalid(key, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Invalid(key, f"expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _Invalid(key, f"expected a table, got {value!r}")
        return _from_table(tp, value, key)
    raise TypeError(f"no conversion for {tp!r}")  # pragma: no cover


def _plain_table(value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready copy of a free-form table (lists stay lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(value)


def _from_table(cls: type, table: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.init and not f.name.startswith("_")]
    unknown = sorted(set(table) - set(known))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise _Invalid(f"{where}{unknown[0]}",
                       f"unknown key (known keys{' of ' + prefix if prefix else ''}: "
                       f"{', '.join(known)})")
    kwargs = {}
    for f in fields(cls):
        if f.name in table:
            key = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _convert(table[f.name], hints[f.name], key)
    missing = [f.name for f in fields(cls) if f.init and f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        key = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise _Invalid(key, "required key is missing")
    try:
        return cls(**kwargs)
    except _Invalid as exc:
        if prefix and not exc.key.startswith(prefix):
            raise _Invalid(f"{prefix}.{exc.key}", str(exc).split(": ", 1)[-1]) from None
        raise


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj) if f.init
                and not f.name.startswith("_")}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise _Invalid(key, message)


def _positive(value: int | None, key: str, *, allow_zero: bool = False) -> None:
    if value is not None:
        _check(value >= (0 if allow_zero else 1), key,
               f"must be {'>= 0' if allow_zero else '>= 1'}, got {value}")


def _unique(values: tuple, key: str) -> None:
    seen = set()
    for v in values:
        _check(v not in seen, key, f"{v!r} appears twice")
        seen.add(v)


# -- sections ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataConfig:
    """Which edits the run makes.

    ``source`` is ``"world"`` (the embedded world's requests) or any path
    :func:`corredit.data.load_dataset` reads (``format`` and ``options`` go to it).
    Filters apply in this order: ``relations``, ``subject_first`` (for the world, the
    phrasing is drawn among subject-first / subject-last ones), subjects with at least
    ``min_facts_per_subject`` edits, at most ``max_facts_per_subject`` edits per subject,
    a seeded sample of ``n_subjects`` subjects, then a seeded sample of ``max_edits``.
    With ``known`` (``"prefers_true"`` or ``"top_k"``, see
    :mod:`corredit.evaluate.known`; ``known_k`` is the k of ``top_k``) the last step is
    instead: the edits in a seeded order, judged on the run's unedited model, the first
    ``max_edits`` the model knows (all known ones without ``max_edits``); the verdicts are
    kept in the run folder's ``known.parquet``.
    """

    source: str = "world"
    format: str | None = None
    options: dict[str, Any] = _field(default_factory=dict)
    relations: tuple[str, ...] | None = None
    subject_first: bool | None = None
    min_facts_per_subject: int = 1
    max_facts_per_subject: int | None = None
    n_subjects: int | None = None
    max_edits: int | None = None
    seed: int = 0
    known: str | None = None
    known_k: int = 10

    def __post_init__(self) -> None:
        _check(bool(self.source.strip()), "source", "must not be empty")
        _check(self.known in (None, "prefers_true", "top_k"), "known",
               f"must be 'prefers_true' or 'top_k', got {self.known!r}")
        _positive(self.known_k, "known_k")
        _positive(self.min_facts_per_subject, "min_facts_per_subject")
        _positive(self.max_facts_per_subject, "max_facts_per_subject")
        _positive(self.n_subjects, "n_subjects")
        _positive(self.max_edits, "max_edits")
        _positive(self.seed, "seed", allow_zero=True)
        if self.max_facts_per_subject is not None:
            _check(self.max_facts_per_subject >= self.min_facts_per_subject,
                   "max_facts_per_subject",
                   f"{self.max_facts_per_subject} is below min_facts_per_subject="
                   f"{self.min_facts_per_subject}")
        if self.relations is not None:
            _check(len(self.relations) > 0, "relations", "give at least one relation id")

    @property
    def dataset_name(self) -> str:
        """The ``dataset`` column: ``"world"`` or the source's file or folder name."""
        if self.source == "world":
            return "world"
        return Path(self.source).name or self.source


@dataclass(frozen=True)
class StatsConfig:
    """Second moments of the MLP keys for the editors that need them (computed once on the
    unedited model, cached under the run's ``cache_dir``). ``corpus`` is ``"world"`` (the world's
    statistics texts), ``"model"`` or ``"model:N_DOCS:LENGTH"`` (text sampled from the model
    itself, seeded and cached: needs nothing extra; default 256 x 128 tokens),
    ``"hf:NAME[:CONFIG[:SPLIT]]"`` (a Hugging Face dataset, online), or
    a text file (one document per line; ``split = "paragraph"`` for blank-line blocks;
    ``clean`` names a cleaner such as ``"wikitext"``)."""

    corpus: str = "world"
    max_tokens: int = 20000
    batch_size: int = 16
    max_length: int = 128
    split: str = "line"
    clean: str | None = None

    def __post_init__(self) -> None:
        _positive(self.max_tokens, "max_tokens")
        _positive(self.batch_size, "batch_size")
        _positive(self.max_length, "max_length")
        _check(self.split in ("line", "paragraph"), "split",
               f"must be 'line' or 'paragraph', got {self.split!r}")


@dataclass(frozen=True)
class EmbeddingConfig:
    """One embedding of the run's edits: ``embedder`` is a registered name in
    ``corredit.embed.EMBEDDERS``; ``params`` go to its constructor. Model-based embedders
    get the run's model; ``whitened_key`` gets the second moment of its layer; embedders
    naming an ``editor`` get that editor's ``hparams`` from this config unless given."""

    name: str
    embedder: str
    field: str = "subject"
    params: dict[str, Any] = _field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(bool(self.name) and ":" not in self.name and self.name.strip() == self.name,
               "name", f"must be a non-empty name without ':' or spaces at the ends, got "
                       f"{self.name!r}")
        _check("field" not in self.params, "params.field", "set 'field' outside params")


@dataclass(frozen=True)
class GraphConfig:
    """The correlation graph over all the run's edits (``graph_edges.parquet``): a kNN
    graph with ``k`` neighbours, or every pair above ``threshold`` when given, under the
    embedding named ``embedding`` (default: the first)."""

    embedding: str | None = None
    k: int = 10
    mutual: bool = False
    threshold: float | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        _positive(self.k, "k")


@dataclass(frozen=True)
class ScheduleConfig:
    """Schedulers (names in ``corredit.schedule.SCHEDULERS``) and batch sizes of the grid;
    ``embedding`` names the embedding that similarity-based schedulers use (default: the
    first); ``params`` holds keyword arguments per scheduler name."""

    schedulers: tuple[str, ...] = ("random",)
    batch_sizes: tuple[int, ...] = (16,)
    embedding: str | None = None
    params: dict[str, Any] = _field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(len(self.schedulers) > 0, "schedulers", "give at least one scheduler")
        _check(len(self.batch_sizes) > 0, "batch_sizes", "give at least one batch size")
        _unique(self.schedulers, "schedulers")
        _unique(self.batch_sizes, "batch_sizes")
        for i, b in enumerate(self.batch_sizes):
            _positive(b, f"batch_sizes[{i}]")
        for name, p in self.params.items():
            _check(isinstance(p, Mapping), f"params.{name}",
                   f"expected a table of keyword arguments, got {p!r}")
            _check(name in self.schedulers, f"params.{name}",
                   f"parameters for scheduler {name!r}, which is not in schedulers "
                   f"{list(self.schedulers)}")


#: The [data] filters an editor's ``subset`` may use.
SUBSET_KEYS: tuple[str, ...] = ("relations", "subject_first", "min_facts_per_subject",
                                "max_facts_per_subject", "n_subjects", "max_edits", "seed")


@dataclass(frozen=True)
class EditorConfig:
    """One editor of the grid: ``name`` in ``corredit.editors.EDITORS``; ``mode`` how it
    applies batches; ``label`` the ``editor`` column (default: ``name``; needed to tell two
    entries of one editor apart); ``hparams`` overrides of its per-model defaults;
    ``batch_sizes`` / ``schedulers`` replace the grid's for this editor; ``stats`` whether
    it gets second-moment statistics.

    ``subset`` restricts this editor's trials to a subset of the run's edits, chosen by the
    ``[data]`` filters it names (``n_subjects``, ``max_edits``, ``relations``,
    ``min_facts_per_subject``, ``max_facts_per_subject``, ``subject_first``, ``seed``),
    e.g. ``subset = { n_subjects = 24 }`` for a costly sequential editor.

    ``share_values``: in mode ``batch`` every batch starts from the unedited model, so an
    editor that optimises each fact's value vector on its own (ROME, MEMIT) gets the same
    vector in every batch; it is then optimised once per seed for all the editor's edits
    and shared by its trials (same result up to floating-point order, far less work).
    """

    name: str
    mode: str = "batch"
    label: str | None = None
    hparams: dict[str, Any] = _field(default_factory=dict)
    batch_sizes: tuple[int, ...] | None = None
    schedulers: tuple[str, ...] | None = None
    stats: bool = True
    subset: dict[str, Any] = _field(default_factory=dict)
    share_values: bool = True

    def __post_init__(self) -> None:
        _check(bool(self.name), "name", "must not be empty")
        _check(self.mode in MODES, "mode", f"unknown mode {self.mode!r}; known: "
                                           f"{', '.join(MODES)}")
        if self.label is not None:
            _check(bool(self.label) and "/" not in self.label and self.label.strip() == self.label,
                   "label", f"must be a non-empty name without '/', got {self.label!r}")
        if self.batch_sizes is not None:
            _check(len(self.batch_sizes) > 0, "batch_sizes", "give at least one batch size")
            _unique(self.batch_sizes, "batch_sizes")
            for i, b in enumerate(self.batch_sizes):
                _positive(b, f"batch_sizes[{i}]")
            if self.mode == "sequential":
                _check(self.batch_sizes == (1,), "batch_sizes",
                       f"mode 'sequential' edits one fact per step (batch size 1); got "
                       f"{list(self.batch_sizes)} (use mode 'sequential-batch' for larger "
                       f"batches)")
        if self.schedulers is not None:
            _check(len(self.schedulers) > 0, "schedulers", "give at least one scheduler")
            _unique(self.schedulers, "schedulers")
        self.subset_filters()

    def subset_filters(self, source: str = "world") -> "DataConfig | None":
        """The ``subset`` as a :class:`DataConfig` over ``source`` (None without one)."""
        if not self.subset:
            return None
        unknown = sorted(set(self.subset) - set(SUBSET_KEYS))
        _check(not unknown, f"subset.{unknown[0] if unknown else ''}",
               f"unknown key (known keys of subset: {', '.join(SUBSET_KEYS)})")
        try:
            return _from_table(DataConfig, {**self.subset, "source": source}, "")
        except _Invalid as exc:
            raise _Invalid(f"subset.{exc.key}", str(exc)[len(exc.key) + 2:]) from None

    @property
    def column(self) -> str:
        """The ``editor`` column of this entry's rows."""
        return self.label or self.name


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation: ``suites`` are names registered in ``corredit.runner.SUITES``;
    ``batch_size`` is the scoring batch; ``pre_edit`` scores every case on the unedited
    model (step -1). In sequential modes every case is scored right after its batch and
    the earlier cases are re-scored at retention checkpoints: every ``retention_every``
    steps when > 0, else at ``retention_points`` evenly spaced steps; always at the last
    step."""

    suites: tuple[str, ...] = DEFAULT_SUITES
    batch_size: int = 64
    pre_edit: bool = True
    retention_every: int = 0
    retention_points: int = 4

    def __post_init__(self) -> None:
        _unique(self.suites, "suites")
        _positive(self.batch_size, "batch_size")
        _positive(self.retention_every, "retention_every", allow_zero=True)
        _positive(self.retention_points, "retention_points", allow_zero=True)


@dataclass(frozen=True)
class HealthConfig:
    """The health suite: perplexity on ``max_tokens`` tokens of held-out text (``"world"``:
    the world's held-out texts, or a text file), in windows of ``max_length``; measured
    before any edit and at every ``every``-th measurement step (and the last)."""

    texts: str = "world"
    max_tokens: int = 4000
    max_length: int = 128
    batch_size: int = 8
    every: int = 1

    def __post_init__(self) -> None:
        _positive(self.max_tokens, "max_tokens")
        _positive(self.max_length, "max_length")
        _check(self.max_length >= 2, "max_length", "must be >= 2")
        _positive(self.batch_size, "batch_size")
        _positive(self.every, "every")


@dataclass(frozen=True)
class TrialSpec:
    """One cell of the grid: an editor entry, a scheduler, a batch size and a seed."""

    editor: EditorConfig
    scheduler: str
    batch_size: int
    seed: int

    @property
    def name(self) -> str:
        """The trial's name (its file name in the run folder)."""
        return f"{self.editor.column}-{self.scheduler}-b{self.batch_size}-s{self.seed}"


_SECTIONS: dict[str, type] = {
    "data": DataConfig, "stats": StatsConfig, "graph": GraphConfig,
    "schedule": ScheduleConfig, "evaluate": EvaluateConfig, "health": HealthConfig,
}


@dataclass(frozen=True)
class RunConfig:
    """A whole run (see the module docstring for the file format)."""

    name: str
    editors: tuple[EditorConfig, ...]
    model: str = "world"
    device: str | None = None
    dtype: str | None = None
    seeds: tuple[int, ...] = (0,)
    progress: bool = True
    cache_dir: str | None = None
    threads: int | None = None
    data: DataConfig = _field(default_factory=DataConfig)
    stats: StatsConfig = _field(default_factory=StatsConfig)
    embeddings: tuple[EmbeddingConfig, ...] = ()
    graph: GraphConfig = _field(default_factory=GraphConfig)
    schedule: ScheduleConfig = _field(default_factory=ScheduleConfig)
    evaluate: EvaluateConfig = _field(default_factory=EvaluateConfig)
    health: HealthConfig = _field(default_factory=HealthConfig)

    def __post_init__(self) -> None:
        _check(bool(self.name) and "/" not in self.name, "name",
               f"must be a non-empty name without '/', got {self.name!r}")
        _check(bool(self.model), "model", "must not be empty")
        _check(len(self.seeds) > 0, "seeds", "give at least one seed")
        _positive(self.threads, "threads")
        _unique(self.seeds, "seeds")
        for i, s in enumerate(self.seeds):
            _positive(s, f"seeds[{i}]", allow_zero=True)
        _check(len(self.editors) > 0, "editors", "give at least one [[editors]] entry")
        columns = [e.column for e in self.editors]
        for i, c in enumerate(columns):
            _check(c not in columns[:i], f"editors[{i}].label",
                   f"two editor entries are labelled {c!r}; give each a distinct label")
        names = [e.name for e in self.embeddings]
        for i, n in enumerate(names):
            _check(n not in names[:i], f"embeddings[{i}].name", f"{n!r} appears twice")
        for key, ref in (("graph.embedding", self.graph.embedding),
                         ("schedule.embedding", self.schedule.embedding)):
            if ref is not None:
                _check(ref in names, key, f"no embedding named {ref!r}; the [[embeddings]] "
                                          f"are {names or 'none'}")

    # -- derived -----------------------------------------------------------------------
    @property
    def schedule_embedding(self) -> str | None:
        """The embedding schedulers rank by (None when the run has none)."""
        return self.schedule.embedding or (self.embeddings[0].name if self.embeddings else None)

    @property
    def graph_embedding(self) -> str | None:
        """The embedding the correlation graph is built from (None: no graph)."""
        if not self.graph.enabled:
            return None
        return self.graph.embedding or (self.embeddings[0].name if self.embeddings else None)

    def editor_batch_sizes(self, editor: EditorConfig) -> tuple[int, ...]:
        """The batch sizes of ``editor``'s trials."""
        if editor.mode == "sequential":
            return (1,)
        return editor.batch_sizes or self.schedule.batch_sizes

    def trials(self) -> list[TrialSpec]:
        """Every trial of the grid, in run order (editor, batch size, scheduler, seed)."""
        out = []
        for e in self.editors:
            for b in self.editor_batch_sizes(e):
                for s in e.schedulers or self.schedule.schedulers:
                    for seed in self.seeds:
                        out.append(TrialSpec(e, s, b, seed))
        names = [t.name for t in out]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:  # pragma: no cover - labels are unique, so names are
            raise ValueError(f"trial names repeat: {dup}")
        return out

    def scheduler_names(self) -> list[str]:
        """Every scheduler some trial uses."""
        out: list[str] = []
        for e in self.editors:
            for s in e.schedulers or self.schedule.schedulers:
                if s not in out:
                    out.append(s)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-ready dict; :meth:`from_dict` reads it back."""
        return _to_plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "config") -> "RunConfig":
        """Build from a mapping (a parsed TOML file or :meth:`to_dict`); a bad key or
        value raises ``ValueError`` naming ``source`` and the key."""
        return parse_config(d, source=source)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with top-level fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def check_names(self) -> None:
        """Check every registered name (editors, modes, schedulers and their parameters,
        embedders, suites) against its registry; imports those packages (torch too)."""
        from corredit.editors import EDITORS, MODES as EDITOR_MODES
        from corredit.embed import EMBEDDERS
        from corredit.schedule import SCHEDULERS

        from corredit.runner import SUITES

        for i, e in enumerate(self.editors):
            if e.name not in EDITORS:
                raise ValueError(f"editors[{i}].name: unknown editor {e.name!r}; known: "
                                 f"{', '.join(EDITORS.names())}")
            if e.mode not in EDITOR_MODES:  # pragma: no cover - same list
                raise ValueError(f"editors[{i}].mode: the editors do not know mode {e.mode!r}")
            for s in e.schedulers or ():
                if s not in SCHEDULERS:
                    raise ValueError(f"editors[{i}].schedulers: unknown scheduler {s!r}; "
                                     f"known: {', '.join(SCHEDULERS.names())}")
        for s in self.schedule.schedulers:
            if s not in SCHEDULERS:
                raise ValueError(f"schedule.schedulers: unknown scheduler {s!r}; known: "
                                 f"{', '.join(SCHEDULERS.names())}")
        for i, emb in enumerate(self.embeddings):
            if emb.embedder not in EMBEDDERS:
                raise ValueError(f"embeddings[{i}].embedder: unknown embedder "
                                 f"{emb.embedder!r}; known: {', '.join(EMBEDDERS.names())}")
        for s in self.evaluate.suites:
            if s not in SUITES:
                raise ValueError(f"evaluate.suites: unknown suite {s!r}; known: "
                                 f"{', '.join(SUITES.names())}")
        if not self.embeddings and self.schedule_embedding is None:
            from corredit.schedule import make_schedule

            for s in self.scheduler_names():  # schedulers that need embeddings fail early
                try:
                    make_schedule(s, _probe_requests(), 1, seed=0,
                                  **self.schedule.params.get(s, {}))
                except ValueError as exc:
                    if "embedding" in str(exc):
                        raise ValueError(f"schedule.schedulers: scheduler {s!r} needs an "
                                         f"embedding; add an [[embeddings]] entry") from None
                    raise ValueError(f"schedule.params.{s}: {exc}") from None


def _probe_requests() -> list:
    from corredit.types import EditRequest

    return [EditRequest(case_id=str(i), subject=f"S{i % 2}", relation_id="r",
                        prompt="{} is", target_new="x", target_true="y") for i in range(3)]


def parse_config(table: Mapping[str, Any], *, source: str = "config",
                 default_name: str | None = None) -> RunConfig:
    """A :class:`RunConfig` from a parsed TOML table; errors name ``source`` and the key."""
    try:
        t = dict(table)
        if "name" not in t and default_name:
            t["name"] = default_name
        if "editors" in t and isinstance(t["editors"], Mapping):
            t["editors"] = [t["editors"]]
        for key in ("editors", "embeddings"):
            if key in t and not isinstance(t[key], (list, tuple)):
                raise _Invalid(key, f"expected an array of tables [[{key}]], got {t[key]!r}")
        for key in ("editors", "embeddings"):
            if key in t:
                cls = EditorConfig if key == "editors" else EmbeddingConfig
                t[key] = [_entry(cls, v, f"{key}[{i}]") for i, v in enumerate(t[key])]
        for key, cls in _SECTIONS.items():
            if key in t:
                if not isinstance(t[key], (Mapping, cls)):
                    raise _Invalid(key, f"expected a table [{key}], got {t[key]!r}")
                t[key] = t[key] if isinstance(t[key], cls) else _section(cls, t[key], key)
        return _from_table(RunConfig, t, "")
    except _Invalid as exc:
        raise ValueError(f"{source}: {exc}") from None


def _entry(cls: type, value: Any, key: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise _Invalid(key, f"expected a table, got {value!r}")
    return _section(cls, value, key)


def _section(cls: type, table: Mapping[str, Any], key: str) -> Any:
    try:
        return _from_table(cls, table, "")
    except _Invalid as exc:
        raise _Invalid(f"{key}.{exc.key}" if exc.key else key,
                       str(exc)[len(exc.key) + 2:] if exc.key else str(exc)) from None


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a TOML run file; errors name the file and the key.

    Example: ``load_config("corredit/configs/demo.toml").trials()``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such config file")
    try:
        with open(p, "rb") as fh:
            table = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: invalid TOML: {exc}") from None
    return parse_config(table, source=str(p), default_name=p.stem)
