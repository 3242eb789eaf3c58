"""The walkthrough notebook: up to date with its generator, and runs top to bottom."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "analysis" / "walkthrough.ipynb"


def _generator():
    spec = importlib.util.spec_from_file_location("make_walkthrough", ROOT / "analysis" / "make_walkthrough.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_notebook_matches_its_generator():
    nbformat = pytest.importorskip("nbformat")
    saved = nbformat.read(NOTEBOOK, as_version=4)
    built = _generator().build()
    assert [(c.cell_type, c.source) for c in saved.cells] == \
        [(c.cell_type, c.source) for c in built.cells], \
        "analysis/walkthrough.ipynb is stale: run python analysis/make_walkthrough.py"
    assert all(not c.get("outputs") for c in saved.cells if c.cell_type == "code")


@pytest.mark.slow
def test_walkthrough_runs_top_to_bottom(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                   for o in outputs)
    for expected in ("facts;", "ES", "decorrelated", "correlated"):
        assert expected in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure was drawn
