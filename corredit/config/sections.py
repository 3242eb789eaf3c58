"""The tables of a run file, one frozen dataclass each, validated on construction.

Usage::

    from corredit.config import DataConfig, EditorConfig
    DataConfig(source="world", n_subjects=80, min_facts_per_subject=3)
    EditorConfig(name="memit", mode="batch", hparams={"layers": [1, 2]})

Torch-free; names of editors, schedulers, embedders and suites are checked against
their registries by :meth:`corredit.config.RunConfig.check_names`.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any, Mapping

from corredit.config.tables import _check, _from_table, _Invalid, _positive, _unique

__all__ = ["MODES", "DEFAULT_SUITES", "SUBSET_KEYS", "DataConfig", "StatsConfig",
           "EmbeddingConfig", "GraphConfig", "ScheduleConfig", "EditorConfig",
           "EvaluateConfig", "HealthConfig", "TrialSpec", "ExecutorConfig", "RayConfig",
           "SlurmConfig"]

#: How an editor applies a schedule's batches (see corredit.results for the row conventions).
MODES: tuple[str, ...] = ("batch", "sequential", "sequential-batch")

#: Suites the runner evaluates when ``[evaluate] suites`` is not given.
DEFAULT_SUITES: tuple[str, ...] = ("probability", "correlation", "health", "diagnostics")


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
    With ``strict`` a data source with any problem (a record set aside, a file unread)
    stops the run; otherwise the run says so loudly on standard error and goes on.
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
    strict: bool = False

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
    """Evaluation: ``suites`` are names registered in ``corredit.evaluate.SUITES``;
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
    before any edit and at every ``every``-th measurement step (and the last). ``clean``
    names a cleaner applied to each line of a text file (``"wikitext"``, as in ``[stats]``)."""

    texts: str = "world"
    max_tokens: int = 4000
    max_length: int = 128
    batch_size: int = 8
    every: int = 1
    clean: str | None = None

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


@dataclass(frozen=True)
class RayConfig:
    """``[executor.ray]``: ``address`` of the cluster for ``ray.init`` (``"auto"``: the one
    this machine belongs to, ``"ray://HOST:10001"``: a remote one; none: ``RAY_ADDRESS``,
    else a cluster started on this machine, else a new local instance of ``num_cpus`` CPUs
    and ``num_gpus`` GPUs); ``max_retries``: how often a trial whose worker died starts
    again within the run; ``init``: further ``ray.init`` keyword arguments
    (``runtime_env``, ``namespace``)."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    max_retries: int = 1
    init: dict[str, Any] = _field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive(self.num_cpus, "num_cpus")
        _positive(self.num_gpus, "num_gpus", allow_zero=True)
        _positive(self.max_retries, "max_retries", allow_zero=True)


@dataclass(frozen=True)
class SlurmConfig:
    """``[executor.slurm]``: SLURM jobs through submitit, one per group of trials, as one
    job array: ``partition``; ``time_min`` one job's time limit in minutes;
    ``array_parallelism`` how many of the run's jobs run at once; ``setup`` shell lines
    each job runs first (``"source .venv/bin/activate"``); ``options`` further ``sbatch``
    options (``{ account = "lab", qos = "normal" }``); ``folder`` submitit's job files
    (default: the run folder's ``slurm/``); ``cluster = "local"`` runs the jobs as local
    processes (submitit's local executor) where there is no SLURM."""

    partition: str | None = None
    time_min: int = 60
    array_parallelism: int = 8
    setup: tuple[str, ...] = ()
    options: dict[str, Any] = _field(default_factory=dict)
    folder: str | None = None
    cluster: str = "slurm"

    def __post_init__(self) -> None:
        _positive(self.time_min, "time_min")
        _positive(self.array_parallelism, "array_parallelism")
        _check(self.cluster in ("slurm", "local"), "cluster",
               f"must be 'slurm' or 'local', got {self.cluster!r}")


@dataclass(frozen=True)
class ExecutorConfig:
    """``[executor]``: where the trials run. ``name``: a registered executor (``local``:
    processes on this machine, ``workers`` of them; ``ray``; ``slurm``; see
    :mod:`corredit.runner.executors`); what one trial gets on ``ray`` and ``slurm``:
    ``cpus_per_trial``, ``gpus_per_trial``, ``memory_gb``. How a run is executed is not
    part of what it computes: a run folder started on one executor resumes on another."""

    name: str = "local"
    workers: int = 1
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    memory_gb: float | None = None
    ray: RayConfig = _field(default_factory=RayConfig)
    slurm: SlurmConfig = _field(default_factory=SlurmConfig)

    def __post_init__(self) -> None:
        _check(bool(self.name), "name", "must not be empty")
        _positive(self.workers, "workers")
        _positive(self.cpus_per_trial, "cpus_per_trial")
        _check(self.gpus_per_trial >= 0, "gpus_per_trial",
               f"must be >= 0, got {self.gpus_per_trial}")
        _check(self.memory_gb is None or self.memory_gb > 0, "memory_gb",
               f"must be > 0, got {self.memory_gb}")
