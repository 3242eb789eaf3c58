"""Atomic writes: the file appears whole or not at all; a failed writer leaves no trace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from corredit.atomic import atomic_path, atomic_write_parquet, atomic_write_text


def test_writes_replace_whole_files_and_keep_suffixes(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text("one\n", target)
    atomic_write_text("two\n", target)
    assert target.read_text() == "two\n"
    atomic_write_parquet(pd.DataFrame({"x": [1, 2]}), tmp_path / "r.parquet")
    assert pd.read_parquet(tmp_path / "r.parquet")["x"].tolist() == [1, 2]
    with atomic_path(tmp_path / "m.npz") as tmp:
        assert tmp.suffix == ".npz"
        np.savez(tmp, x=np.arange(3))          # np.savez adds no second suffix
    assert np.load(tmp_path / "m.npz")["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "r.parquet", "sub"]


def test_a_failed_writer_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
