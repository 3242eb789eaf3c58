"""The whole run: :class:`RunConfig`, its grid of trials, and reading it from TOML.

Usage::

    from corredit.config import load_config, as_config
    cfg = load_config("corredit/configs/demo.toml")     # ValueError names file and key
    as_config({"name": "x", "editors": [{"name": "memit"}]})   # a dict, a path or a config
    cfg.check_names()                                    # against the registries (torch)
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any, Mapping

from corredit.config.plugins import import_plugins
from corredit.config.sections import (
    DataConfig, EditorConfig, EmbeddingConfig, EvaluateConfig, GraphConfig, HealthConfig,
    ScheduleConfig, StatsConfig, TrialSpec, ExecutorConfig,
)
from corredit.config.tables import (
    _check, _entry, _from_table, _Invalid, _positive, _section, _to_plain, _unique,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RunConfig", "parse_config", "load_config", "as_config", "read_toml"]


_SECTIONS: dict[str, type] = {
    "data": DataConfig, "stats": StatsConfig, "graph": GraphConfig,
    "schedule": ScheduleConfig, "evaluate": EvaluateConfig, "health": HealthConfig,
    "executor": ExecutorConfig,
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
    imports: tuple[str, ...] = ()
    data: DataConfig = _field(default_factory=DataConfig)
    stats: StatsConfig = _field(default_factory=StatsConfig)
    embeddings: tuple[EmbeddingConfig, ...] = ()
    graph: GraphConfig = _field(default_factory=GraphConfig)
    schedule: ScheduleConfig = _field(default_factory=ScheduleConfig)
    evaluate: EvaluateConfig = _field(default_factory=EvaluateConfig)
    health: HealthConfig = _field(default_factory=HealthConfig)
    executor: ExecutorConfig = _field(default_factory=ExecutorConfig)

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
        """A plain JSON-ready dict; :meth:`from_dict` reads it back (``executor`` only
        when it is not the default, so a default run's dict is that of earlier versions)."""
        d = _to_plain(self)
        if self.executor == ExecutorConfig():
            del d["executor"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "config") -> "RunConfig":
        """Build from a mapping (a parsed TOML file or :meth:`to_dict`); a bad key or
        value raises ``ValueError`` naming ``source`` and the key."""
        return parse_config(d, source=source)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with top-level fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def import_plugins(self) -> None:
        """Import what registers this run's own editors, embedders, schedulers and suites:
        the modules (``"my_lab.editors"``) or Python files (``"plugins/sched.py"``,
        relative to the working directory) of ``imports``, and every entry point of the
        group ``corredit.plugins`` of the installed packages."""
        import_plugins(self.imports)

    def check_names(self) -> None:
        """Check every registered name (editors, modes, schedulers and their parameters,
        embedders, suites) against its registry, after importing the ``imports``;
        imports those packages (torch too)."""
        self.import_plugins()
        from corredit.editors import EDITORS, MODES as EDITOR_MODES
        from corredit.embed import EMBEDDERS
        from corredit.schedule import SCHEDULERS

        from corredit.evaluate import SUITES

        def known(name: str, registry, key: str, kind: str) -> None:
            if name not in registry:
                raise ValueError(f"{key}: unknown {kind} {name!r}; known: "
                                 f"{', '.join(registry.names())}")

        for i, e in enumerate(self.editors):
            known(e.name, EDITORS, f"editors[{i}].name", "editor")
            if e.mode not in EDITOR_MODES:  # pragma: no cover - same list
                raise ValueError(f"editors[{i}].mode: the editors do not know mode {e.mode!r}")
            supported = EDITORS.get(e.name).supported_modes
            if e.mode not in supported:
                raise ValueError(f"editors[{i}].mode: editor {e.name!r} does not support mode "
                                 f"{e.mode!r}; it supports {', '.join(supported)}")
            for s in e.schedulers or ():
                known(s, SCHEDULERS, f"editors[{i}].schedulers", "scheduler")
        for s in self.schedule.schedulers:
            known(s, SCHEDULERS, "schedule.schedulers", "scheduler")
        for i, emb in enumerate(self.embeddings):
            known(emb.embedder, EMBEDDERS, f"embeddings[{i}].embedder", "embedder")
        for s in self.evaluate.suites:
            known(s, SUITES, "evaluate.suites", "suite")
        from corredit.stats.corpus import CLEANERS

        for key, clean in (("stats.clean", self.stats.clean), ("health.clean", self.health.clean)):
            if clean is not None and clean not in CLEANERS:
                raise ValueError(f"{key}: unknown cleaner {clean!r}; known: "
                                 f"{', '.join(sorted(CLEANERS))}")
        from corredit.schedule import check_scheduler_params, needs_embeddings

        for s in self.scheduler_names():
            if needs_embeddings(s) and self.schedule_embedding is None:
                raise ValueError(f"schedule.schedulers: scheduler {s!r} needs an embedding; "
                                 f"add an [[embeddings]] entry")
            try:
                check_scheduler_params(s, self.schedule.params.get(s, {}))
            except ValueError as exc:
                raise ValueError(f"schedule.params.{s}: {exc}") from None


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


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a TOML run file; errors name the file and the key.

    Example: ``load_config("corredit/configs/demo.toml").trials()``.
    """
    p = Path(path)
    return parse_config(read_toml(p, "config"), source=str(p), default_name=p.stem)


def read_toml(path: str | os.PathLike[str], what: str = "config") -> dict[str, Any]:
    """The table of the TOML file ``path``; a missing file or bad TOML is an error naming
    the file (``what`` says which kind of file was expected)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such {what} file")
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: invalid TOML: {exc}") from None


def as_config(config: "RunConfig | Mapping[str, Any] | str | os.PathLike[str]") -> RunConfig:
    """``config`` as a :class:`RunConfig`: itself, a mapping (a parsed TOML table or
    :meth:`RunConfig.to_dict`) or the path of a TOML file."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(config, source="config", default_name="run")
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    raise TypeError(f"config: expected a RunConfig, a mapping or a TOML path, got "
                    f"{type(config).__name__}")
