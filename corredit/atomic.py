"""Atomic file writes: a file appears whole under its name or not at all (torch-free).

Usage::

    from corredit.atomic import atomic_path, atomic_write_text, atomic_write_parquet
    atomic_write_text("hello\\n", Path("out/a.txt"))
    atomic_write_parquet(df, Path("out/rows.parquet"))
    with atomic_path(Path("out/arrays.npz")) as tmp:   # any writer that takes a path
        np.savez(tmp, x=x)

The data go to a hidden temporary sibling (same suffix, so writers that add one do not)
which ``os.replace`` moves onto the name once the writer returns; on an error the
temporary file is removed and the old file, if any, is left as it was.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_write_parquet"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(data: bytes, path: str | os.PathLike[str]) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_parquet(df: Any, path: str | os.PathLike[str]) -> None:
    """Write the DataFrame ``df`` to ``path`` as parquet (no index) atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
