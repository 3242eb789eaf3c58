"""The README's worked example runs as written; it opens with the notebook's one-cell study
(at most 6 lines), which loads the world model, edits 32 facts with MEMIT, scores them and
draws a figure from the rows."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"## A worked example \(Python\)\n\n```python\n(.*?)```", text, re.S)
    assert m, "README.md has no worked example"
    return m.group(1)


def _quickstart() -> str:
    spec = importlib.util.spec_from_file_location("make_walkthrough",
                                                  ROOT / "analysis" / "make_walkthrough.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.QUICKSTART


def test_the_one_cell_study_is_short_and_opens_the_readme_example():
    cell = _quickstart()
    assert len(cell.splitlines()) <= 6
    assert _example().startswith(cell + "\n")


def test_readme_worked_example_runs(tmp_path):
    script = tmp_path / "example.py"
    script.write_text("import matplotlib\nmatplotlib.use('Agg')\n" + _example() +
                      "\nimport matplotlib.pyplot as plt\n"
                      "print('axes drawn:', len(plt.gcf().axes))\n", encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mean_similarity" in out.stdout and "decorrelated" in out.stdout
    assert re.search(r"correlated\s+ES\s+\d", out.stdout), out.stdout[-2000:]
    assert re.search(r"axes drawn: [1-9]", out.stdout)
