"""Knowledge editors over one shared key/value engine.

Usage::

    from corredit.editors import get_editor, EDITORS, EditResult, check_editor
    EDITORS.names()       # ['alphaedit', 'emmet', 'ft-l', 'ft-m', 'memit', 'memit-merge', 'pmet', 'rome']
    ed = get_editor("memit")()                       # defaults per model (defaults.toml)
    res = ed.apply(h, requests, stats=moments, seed=0)   # EditResult(deltas, diagnostics)
    ed.restore(h)                                    # bit-exact

The engine (``sequences``, ``templates``, ``keys``, ``values``, ``linalg``,
``covariance``) is shared; each update rule is one small module registering itself.
"""

from corredit.editors.base import EDITORS, MODES, Editor, EditResult, get_editor, register_editor
from corredit.editors.hparams import (
    AlphaEditHParams,
    EmmetHParams,
    FTHParams,
    MemitMergeHParams,
    HParams,
    MemitHParams,
    PmetHParams,
    RomeHParams,
    ValueHParams,
    default_hparams,
)
from corredit.editors.values import MaskedAdam, ValueOptimizer, ValueResult, ValueUnit, units_from_requests
from corredit.editors import alphaedit, emmet, ft, memit, memit_merge, pmet, rome  # noqa: F401  (registration)
from corredit.editors import grace, tpatcher  # noqa: F401  (registration: memory-based editors)
from corredit.editors import kn, mend  # noqa: F401  (registration: knowledge neurons, MEND)
from corredit.editors.memory import Attachments, MemoryEditor
from corredit.editors.checks import check_editor
from corredit.editors.key_embedding import EditorKeyEmbedder, EngineKeys, KeyFunction, WhitenedKeyEmbedder
from corredit.editors.forecast import Forecast, forecast

__all__ = [
    "EDITORS",
    "MODES",
    "Editor",
    "EditResult",
    "get_editor",
    "register_editor",
    "check_editor",
    "MemoryEditor",
    "Attachments",
    "forecast",
    "Forecast",
    "EditorKeyEmbedder",
    "WhitenedKeyEmbedder",
    "EngineKeys",
    "KeyFunction",
    "HParams",
    "ValueHParams",
    "FTHParams",
    "RomeHParams",
    "MemitHParams",
    "EmmetHParams",
    "AlphaEditHParams",
    "MemitMergeHParams",
    "PmetHParams",
    "default_hparams",
    "ValueOptimizer",
    "ValueResult",
    "ValueUnit",
    "MaskedAdam",
    "units_from_requests",
]
