"""The embedded knowledge world: a seeded knowledge graph, its texts, its edit requests and
a small GPT-2 model trained on it.

Usage::

    from corredit.world import load_world, default_model_dir
    w = load_world()                                  # the default world
    reqs = w.requests(relations=["born_in"], subject_first=True, n=50, seed=0)
    reqs[0].rewrite_prompt, reqs[0].target_true, reqs[0].target_new
    w.stats_texts()[:2], w.heldout_texts()[:2], w.snippets(reqs[0].target_new)
    from corredit.models import load
    h = load(str(default_model_dir()))

    from corredit.world import build_world, WorldOptions
    build_world("out/world-7", WorldOptions(seed=7, name_sharing=0.5))

Importing this package does not import torch (building and measuring do).
"""

from __future__ import annotations

from pathlib import Path

from corredit.world.build import RECALL_GATES, build_world, load_model_and_tokenizer
from corredit.world.graph import Fact, KnowledgeGraph
from corredit.world.measure import first_token_hits, recall_report
from corredit.world.options import WorldOptions
from corredit.world.paths import default_model_dir, default_world_dir
from corredit.world.world import World, generate_world, is_world_dir, read_world
from corredit.world.requests import distinct_subjects

__all__ = [
    "World",
    "WorldOptions",
    "Fact",
    "KnowledgeGraph",
    "load_world",
    "generate_world",
    "build_world",
    "read_world",
    "is_world_dir",
    "default_world_dir",
    "default_model_dir",
    "load_model_and_tokenizer",
    "first_token_hits",
    "recall_report",
    "RECALL_GATES",
    "distinct_subjects",
]


def load_world(path: str | Path | None = None) -> World:
    """The world in folder ``path``; the default world when ``path`` is None."""
    return read_world(default_world_dir() if path is None else path)
