"""corredit: how the correlation between facts shapes knowledge editing.

Usage::

    import corredit
    h = corredit.load("world")                                  # the embedded world's model
    reqs = corredit.load_world().requests(n=32, seed=0)
    result = corredit.edit(h, reqs, "memit", corpus="world")    # MEMIT, one batch
    rows = corredit.score(h, reqs, result=result)               # tidy rows for corredit.plots
    corredit.restore(h, result)
    corredit.run_experiment("run.toml", requests=reqs, handle=h)   # a whole grid

    req = corredit.EditRequest.from_prompt("Toma Velik was born in", "Toma Velik", "Rasko")

Subpackages follow one direction of dependency: ``data``/``world`` -> ``models`` ->
``stats``/``embed`` -> ``graph`` -> ``schedule`` -> ``editors`` -> ``evaluate`` ->
``runner`` -> ``results`` -> ``plots``; :mod:`corredit.api` sits on top. Importing
``corredit`` does not import torch (the functions above import it when called).
"""

from typing import Any

from corredit.types import EditRequest, MultiHopQuestion, LocalityPrompt

__all__ = ["EditRequest", "MultiHopQuestion", "LocalityPrompt", "__version__", "edit",
           "score", "restore", "run_experiment", "load", "load_world", "steady_heap"]
__version__ = "0.1.0"

_LAZY = {"edit": "corredit.api", "score": "corredit.api", "restore": "corredit.api",
         "run_experiment": "corredit.api", "load": "corredit.models",
         "load_world": "corredit.world", "steady_heap": "corredit.heap"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'corredit' has no attribute {name!r}")
