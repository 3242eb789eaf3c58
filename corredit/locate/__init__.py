"""Locate where a model stores a fact: causal tracing, averages over facts, layer choice.

Usage::

    from corredit.locate import trace, aggregate, suggest_layers
    rows = trace(h, requests, kind="mlp", window=10, samples=10, seed=0)   # tidy rows
    agg = aggregate(rows, seed=0)              # six token groups × layers, bootstrap CIs
    suggest_layers(agg, kind="mlp")            # edit layer and a MEMIT layer range

The aggregation helpers need only pandas and numpy; :func:`trace` (torch) is imported
on first use.
"""

from __future__ import annotations

from typing import Any

from corredit.locate.aggregate import (
    GROUPS,
    aggregate,
    fact_groups,
    fact_profiles,
    profile_correlation,
    suggest_layers,
    token_groups,
)

__all__ = ["trace", "KINDS", "embedding_noise_level", "subject_keys", "GROUPS", "aggregate",
           "fact_groups", "fact_profiles", "profile_correlation", "suggest_layers", "token_groups"]

_LAZY = {"trace", "KINDS", "embedding_noise_level", "subject_keys"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from corredit.locate import tracing

        return getattr(tracing, name)
    raise AttributeError(f"module 'corredit.locate' has no attribute {name!r}")
