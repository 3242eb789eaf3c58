"""The README's worked example runs as written and prints the scores it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_worked_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"## A worked example \(Python\)\n\n```python\n(.*?)```", text, re.S)
    assert m, "README.md has no worked example"
    script = tmp_path / "example.py"
    script.write_text(m.group(1), encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mean_similarity" in out.stdout or "same_subject_pairs" in out.stdout
    assert re.search(r"'ES': \d", out.stdout) and "'NS'" in out.stdout
