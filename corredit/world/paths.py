"""Where the default world lives.

Usage::

    from corredit.world.paths import default_world_dir, default_model_dir
    default_world_dir()     # <repo>/data/world-default, else a built-once user cache
    default_model_dir()     # the folder for corredit.models.load / from_pretrained

In a source checkout the default world is the shipped ``data/world-default``. Where that
folder is absent (an installed wheel), the first call builds the default world into
``$CORREDIT_CACHE`` (default ``~/.cache/corredit``) and later calls reuse it.
"""

from __future__ import annotations

import os
from pathlib import Path

import corredit
from corredit.paths import cache_root
from corredit.world.options import FORMAT_VERSION

__all__ = ["default_world_dir", "default_model_dir", "shipped_world_dir", "cache_root"]


def shipped_world_dir() -> Path:
    """``data/world-default`` beside the package (exists in a source checkout)."""
    return Path(corredit.__file__).resolve().parents[1] / "data" / "world-default"


def default_world_dir(build: bool = True, progress: bool = True) -> Path:
    """The default world's folder: the shipped one, else the cached one (built on first use).

    With ``build=False`` a missing world raises FileNotFoundError instead of building.
    """
    from corredit.world.world import is_world_dir

    shipped = shipped_world_dir()
    if is_world_dir(shipped):
        return shipped
    cached = cache_root() / f"world-default-v{FORMAT_VERSION}-{corredit.__version__}"
    if is_world_dir(cached):
        return cached
    if not build:
        raise FileNotFoundError(f"no default world at {shipped} nor {cached} "
                                f"(build it with `corredit world build --out {cached}`)")
    from corredit.world.build import build_world

    try:
        build_world(cached, progress=progress, overwrite=True)
    except FileExistsError:  # another process finished the same build first
        pass
    if not is_world_dir(cached):
        raise FileNotFoundError(f"{cached}: building the default world left no world there")
    return cached


def default_model_dir(build: bool = True, progress: bool = True) -> Path:
    """The folder of the default world's model and tokenizer (the world folder itself)."""
    return default_world_dir(build=build, progress=progress)
