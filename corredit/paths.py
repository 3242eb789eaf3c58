"""The one cache root of corredit (torch-free).

Usage::

    from corredit.paths import cache_root
    cache_root() / "stats"          # covariance statistics
    cache_root() / "models"         # dequantised GGUF models

``$CORREDIT_CACHE`` when set, else ``~/.cache/corredit``. Every cache of corredit lives
below it: statistics, embeddings, the unpacked world, converted models.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$CORREDIT_CACHE``, else ``~/.cache/corredit`` (not created here)."""
    env = os.environ.get("CORREDIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "corredit"
