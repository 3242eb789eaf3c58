"""The one cache root of corredit (torch-free).

Usage::

    from corredit.paths import cache_root
    cache_root() / "stats"          # covariance statistics
    cache_root() / "models"         # dequantised GGUF models

``$CORREDIT_CACHE`` when set, else ``$XDG_CACHE_HOME/corredit`` or ``~/.cache/corredit``. Every cache of corredit lives
below it: statistics, embeddings, the unpacked world, converted models.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$CORREDIT_CACHE``, else ``$XDG_CACHE_HOME/corredit`` or ``~/.cache/corredit``
    (not created here)."""
    env = os.environ.get("CORREDIT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "corredit"
