"""Corpora and text sources by name: the strings a run's ``[stats] corpus`` and
``[health] texts`` hold, turned into objects.

Usage::

    from corredit.stats.sources import make_corpus, read_texts
    make_corpus("world")                         # the embedded world's statistics texts
    make_corpus("model:256:128", handle=h)       # text sampled from the model (cached)
    make_corpus("hf:wikitext:wikitext-103-raw-v1:train")
    make_corpus("wiki.txt", split="paragraph", clean="wikitext")
    read_texts("world", "heldout")               # the world's held-out texts, or a file's lines
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["make_corpus", "read_texts", "check_source"]


def read_texts(source: str, what: str = "stats", clean: str | None = None) -> list[str]:
    """The texts of ``source``: ``"world"`` (its statistics texts, or with ``what =
    "heldout"`` its held-out texts) or a text file's non-blank lines, each passed through
    the cleaner named ``clean`` (:data:`corredit.stats.corpus.CLEANERS`; lines it drops
    are left out)."""
    if source == "world":
        from corredit.world import load_world

        w = load_world()
        return list(w.heldout_texts() if what == "heldout" else w.stats_texts())
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} texts {source!r}: no such file")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if clean is None:
        return lines
    from corredit.stats.corpus import CLEANERS

    if clean not in CLEANERS:
        raise ValueError(f"{what} texts {source!r}: unknown cleaner {clean!r}; known: "
                         f"{', '.join(sorted(CLEANERS))}")
    return [t for t in map(CLEANERS[clean], lines) if t]


def check_source(source: str, what: str) -> None:
    """Raise ``FileNotFoundError`` now when ``source`` names a text file that is not there
    (``world``, ``model[:N:L]`` and ``hf:...`` are not files)."""
    if source == "world" or source == "model" or source.startswith(("model:", "hf:")):
        return
    if not Path(source).expanduser().is_file():
        raise FileNotFoundError(f"{what}: {source!r}: no such file")


def make_corpus(source: str, *, handle: Any = None, split: str = "line",
                clean: str | None = None) -> Any:
    """The corpus named by ``source`` (see the module docstring); ``handle`` is the model
    that ``model[:N_DOCS:LENGTH]`` samples from (default 256 x 128 tokens)."""
    from corredit.stats.corpus import HFDatasetCorpus, TextFileCorpus, TextsCorpus

    if source == "world":
        return TextsCorpus(read_texts("world", "stats"))
    if source == "model" or source.startswith("model:"):
        from corredit.stats.sampled import ModelSampleCorpus

        if handle is None:
            raise ValueError(f"corpus {source!r} samples from a model: pass handle=")
        sizes = [int(x) for x in source.split(":")[1:]]
        n_docs, length = (sizes + [256, 128][len(sizes):])[:2]
        return ModelSampleCorpus(handle, n_docs=n_docs, length=length, seed=0)
    if source.startswith("hf:"):
        name, config, hf_split = (source[3:].split(":") + [None, None])[:3]
        return HFDatasetCorpus(name, config=config or None, split=hf_split or "train")
    check_source(source, "stats.corpus")
    return TextFileCorpus(str(Path(source).expanduser()), split=split, clean=clean)
