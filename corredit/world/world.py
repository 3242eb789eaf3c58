"""A knowledge world: graph, phrasings, texts, edit requests, and (when built) its model.

Usage::

    from corredit.world import load_world, generate_world, WorldOptions
    w = load_world()                          # the default world (model included)
    w = generate_world(WorldOptions(n_people=30, seed=2))   # graph and texts only, no model
    w.facts[0], w.phrasings("born_in"), w.entities["city"][:3]
    reqs = w.requests(relations=["born_in"], subject_first=True, n=20, seed=1)
    w.training_texts(), w.stats_texts(), w.heldout_texts(), w.snippets("Belun")
    w.model_dir                               # folder for corredit.models.load / from_pretrained

A world folder holds ``world.json`` (graph and phrasings), ``options.json`` (build
options), the texts (``*_texts.jsonl``, ``snippets.json``), ``requests.jsonl`` (one
``EditRequest.to_dict()`` per line, ``requests()`` with default arguments), the model and
tokenizer (``config.json``, ``model.safetensors``, ``tokenizer.json`` ...) and
``report.json`` (measured recall, training time: the only file that differs between two
builds with the same options).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from corredit.types import EditRequest
from corredit.world.corpus import Corpus, render_corpus
from corredit.world.generate import generate_graph
from corredit.world.graph import Fact, KnowledgeGraph
from corredit.world.names import shared_name_share
from corredit.world.options import FORMAT_VERSION, WorldOptions
from corredit.world.requests import make_requests
from corredit.world.schema import Relation

__all__ = ["World", "generate_world", "read_world", "is_world_dir", "WORLD_FILE"]

WORLD_FILE = "world.json"
OPTIONS_FILE = "options.json"
REPORT_FILE = "report.json"
REQUESTS_FILE = "requests.jsonl"
SNIPPETS_FILE = "snippets.json"
TEXT_FILES = {"training": "training_texts.jsonl", "stats": "stats_texts.jsonl",
              "heldout": "heldout_texts.jsonl"}
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class World:
    """A knowledge graph with its texts; ``path`` is the folder it was read from, if any."""

    def __init__(self, graph: KnowledgeGraph, options: WorldOptions, corpus: Corpus,
                 path: Path | None = None) -> None:
        self.graph = graph
        self.options = options
        self.corpus = corpus
        self.path = Path(path) if path is not None else None

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return (f"World(seed={self.options.seed}, n_subjects={len(self.subjects)}, "
                f"n_facts={len(self.facts)}{where})")

    # graph -----------------------------------------------------------------------------
    @property
    def entities(self) -> dict[str, tuple[str, ...]]:
        """Entity names by type (``person``, ``city``, ``country``, ...)."""
        return self.graph.entities

    @property
    def relations(self) -> dict[str, Relation]:
        """Relations by id."""
        return self.graph.relations

    @property
    def facts(self) -> tuple[Fact, ...]:
        """All facts; a fact's index is the case id of its edit request."""
        return self.graph.facts

    @property
    def subjects(self) -> tuple[str, ...]:
        """Distinct subjects of facts."""
        return self.graph.subjects

    def phrasings(self, relation_id: str) -> tuple[str, ...]:
        """The phrasings (templates with ``{}``) of a relation."""
        try:
            return self.graph.relations[relation_id].phrasings
        except KeyError:
            raise KeyError(f"unknown relation {relation_id!r}; known: "
                           f"{sorted(self.graph.relations)}") from None

    def type_of(self, name: str) -> str:
        """The entity type of ``name``."""
        return self.graph.type_of(name)

    def object_of(self, subject: str, relation_id: str) -> str | None:
        """The true object of ``(subject, relation)``."""
        return self.graph.object_of(subject, relation_id)

    # requests and texts ----------------------------------------------------------------
    def requests(self, relations: Iterable[str] | str | None = None, *,
                 subject_first: bool | None = None, phrasing: int | None = None,
                 subjects: Iterable[str] | str | None = None, n: int | None = None,
                 seed: int = 0, n_neighbors: int | None = None) -> list[EditRequest]:
        """Edit requests, one per fact passing the filters (see ``make_requests``).

        ``relations``: ids to keep; ``subject_first``: True/False keeps subject-first /
        subject-last rewrite phrasings; ``phrasing``: a phrasing index; ``subjects``;
        ``n``: a seeded sample; ``seed`` draws phrasings, new targets and the sample.
        """
        return make_requests(
            self.graph, relations=relations, subject_first=subject_first, phrasing=phrasing,
            subjects=subjects, n=n, seed=seed,
            n_neighbors=self.options.n_neighbors if n_neighbors is None else n_neighbors,
        )

    def training_texts(self) -> list[str]:
        """The model's training corpus."""
        return list(self.corpus.training)

    def stats_texts(self) -> list[str]:
        """A corpus of the world's language for second-moment (covariance) statistics."""
        return list(self.corpus.stats)

    def heldout_texts(self) -> list[str]:
        """Texts in frames never trained on, for perplexity."""
        return list(self.corpus.heldout)

    def snippets(self, obj: str) -> list[str]:
        """Short reference sentences about an object (for the reference score)."""
        try:
            return list(self.corpus.snippets[obj])
        except KeyError:
            raise KeyError(f"{obj!r} is no object of this world's facts") from None

    # model and report ------------------------------------------------------------------
    @property
    def model_dir(self) -> Path | None:
        """The folder holding the model and tokenizer, None when the world has no model."""
        if self.path is not None and all((self.path / f).is_file() for f in MODEL_FILES):
            return self.path
        return None

    @property
    def report(self) -> dict[str, Any]:
        """The build report (recall, timings), empty when there is none."""
        if self.path is None or not (self.path / REPORT_FILE).is_file():
            return {}
        return _read_json(self.path / REPORT_FILE)

    def summary(self) -> dict[str, Any]:
        """Counts of the world (no model needed)."""
        people = self.entities.get("person", ())
        return {
            "seed": self.options.seed,
            "n_subjects": len(self.subjects),
            "n_people": len(people),
            "n_entities": sum(len(v) for v in self.entities.values()),
            "n_relations": len(self.relations),
            "n_facts": len(self.facts),
            "n_phrasings": sum(len(r.phrasings) for r in self.relations.values()),
            "entities": {t: len(v) for t, v in self.entities.items()},
            "name_sharing": self.options.name_sharing,
            "shared_name_share": shared_name_share(people),
            "n_training_texts": len(self.corpus.training),
            "n_stats_texts": len(self.corpus.stats),
            "n_heldout_texts": len(self.corpus.heldout),
        }

    # files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write graph, options, texts and default requests into ``path`` (no model)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        doc = {"format": "corredit-world", "format_version": FORMAT_VERSION,
               **self.graph.to_dict(), "summary": self.summary()}
        _write_json(path / WORLD_FILE, doc)
        _write_json(path / OPTIONS_FILE, self.options.to_dict())
        for kind, name in TEXT_FILES.items():
            _write_lines(path / name, getattr(self.corpus, kind))
        _write_json(path / SNIPPETS_FILE, {k: list(v) for k, v in self.corpus.snippets.items()})
        _write_lines(path / REQUESTS_FILE, [r.to_dict() for r in self.requests()])
        return path


def generate_world(options: WorldOptions | None = None) -> World:
    """A world generated from ``options`` (graph and texts; no model)."""
    options = options or WorldOptions()
    graph = generate_graph(options)
    return World(graph, options, render_corpus(graph, seed=options.seed,
                                              place_repeat=options.place_repeat,
                                              fact_lists=options.fact_lists))


def is_world_dir(path: str | Path, with_model: bool = True) -> bool:
    """Whether ``path`` holds a complete world (and its model when ``with_model``)."""
    path = Path(path)
    needed = (WORLD_FILE, OPTIONS_FILE, SNIPPETS_FILE, *TEXT_FILES.values())
    if with_model:
        needed += MODEL_FILES
    return all((path / f).is_file() for f in needed)


def read_world(path: str | Path) -> World:
    """The world stored in folder ``path``; errors name the file and field."""
    path = Path(path)
    wfile = path / WORLD_FILE
    if not wfile.is_file():
        raise FileNotFoundError(f"{wfile}: no world description here (build one with "
                                f"`corredit world build --out {path}`)")
    doc = _read_json(wfile)
    if doc.get("format") != "corredit-world":
        raise ValueError(f"{wfile}: field 'format' must be 'corredit-world', "
                         f"got {doc.get('format')!r}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{wfile}: field 'format_version' is {doc.get('format_version')!r}; this "
                         f"code reads version {FORMAT_VERSION} (rebuild the world)")
    graph = KnowledgeGraph.from_dict(doc, source=str(wfile))
    ofile = path / OPTIONS_FILE
    options = WorldOptions.from_dict(_read_json(ofile), source=str(ofile))
    texts = {kind: tuple(_read_lines(path / name)) for kind, name in TEXT_FILES.items()}
    sfile = path / SNIPPETS_FILE
    snippets = _read_json(sfile)
    if not isinstance(snippets, dict):
        raise ValueError(f"{sfile}: must hold an object mapping objects to lists of sentences")
    corpus = Corpus(training=texts["training"], stats=texts["stats"], heldout=texts["heldout"],
                    snippets={k: tuple(v) for k, v in snippets.items()})
    return World(graph, options, corpus, path=path)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False) + "\n",
                    encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file missing from the world folder") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None


def _write_lines(path: Path, items: Iterable[Any]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for x in items:
            fh.write(json.dumps(x, ensure_ascii=False) + "\n")


def _read_lines(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file missing from the world folder")
    out = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: line {i}: invalid JSON ({exc})") from None
    return out
