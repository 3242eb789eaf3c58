"""Models: load a causal LM with its tokenizer and architecture adapter, trace and
modify activations, locate subject tokens, snapshot and restore weights.

Usage::

    from corredit.models import load, Site, trace, subject_token_index
    h = load("path/to/model")                     # or load("world")
    batch = h.encode(["The Eiffel Tower is in"])
    i = subject_token_index(h.tokenizer, "The Eiffel Tower is in", "Eiffel Tower")
    key = Site("mlp_out", 2, "input")
    res = trace(h, batch["input_ids"], batch["attention_mask"], read=[key], stop_at_layer=2)
    res.values[key][0, i]                         # the subject's key at layer 2

Tiny random models for tests: ``corredit.models.testing.tiny_model``.
"""

from corredit.models.adapters import (
    ADAPTERS,
    ArchitectureAdapter,
    ModuleNameError,
    UnknownArchitectureError,
    get_adapter,
    register_adapter,
    resolve_module,
)
from corredit.models.handle import (
    MODEL_ALIASES,
    ModelHandle,
    ModelNotFoundError,
    default_device,
    register_model_alias,
    wrap,
)
from corredit.models.loading import load
from corredit.models.subject import (
    SubjectNotFoundError, prompt_token_ids, start_token_ids, subject_token_index, subject_token_indices,
)
from corredit.models.tracing import (
    Addition, Site, StopForward, TraceResult, eval_mode, trace, tracing,
)
from corredit.models.weights import param_checksum, restore, snapshot

__all__ = [
    "load",
    "wrap",
    "ModelHandle",
    "ModelNotFoundError",
    "MODEL_ALIASES",
    "register_model_alias",
    "default_device",
    "ArchitectureAdapter",
    "ADAPTERS",
    "register_adapter",
    "get_adapter",
    "resolve_module",
    "UnknownArchitectureError",
    "ModuleNameError",
    "Site",
    "Addition",
    "TraceResult",
    "StopForward",
    "trace",
    "tracing",
    "eval_mode",
    "subject_token_index",
    "subject_token_indices",
    "prompt_token_ids",
    "start_token_ids",
    "SubjectNotFoundError",
    "snapshot",
    "param_checksum",
    "restore",
]
