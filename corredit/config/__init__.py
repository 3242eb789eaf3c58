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
    # imports = ["my_lab.editors"]: modules or .py files registering the run's own
    # editors, embedders, schedulers or suites (corredit.config.plugins)

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

Modules: :mod:`~corredit.config.tables` (TOML tables into dataclasses),
:mod:`~corredit.config.sections` (one dataclass per table), :mod:`~corredit.config.run`
(the whole run), :mod:`~corredit.config.plugins` (a run's own components).
"""

from corredit.config.plugins import import_plugins
from corredit.config.run import RunConfig, as_config, load_config, parse_config
from corredit.config.sections import (
    DEFAULT_SUITES,
    MODES,
    SUBSET_KEYS,
    DataConfig,
    EditorConfig,
    EmbeddingConfig,
    EvaluateConfig,
    GraphConfig,
    HealthConfig,
    ScheduleConfig,
    StatsConfig,
    TrialSpec,
)

__all__ = [
    "MODES",
    "DEFAULT_SUITES",
    "SUBSET_KEYS",
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
    "as_config",
    "import_plugins",
]
