"""MEND: a hypernetwork trained to turn an MLP weight's fine-tuning gradient into an edit.

Usage::

    corredit train-editor mend --model world --data world --out runs/mend-world
    from corredit.editors import get_editor
    ed = get_editor("mend")({"network": "runs/mend-world"})
    ed.apply(h, requests)

Modules: :mod:`~corredit.editors.mend.network` (the gradient transform),
:mod:`~corredit.editors.mend.factors` (gradient factors and edited passes),
:mod:`~corredit.editors.mend.data` (training examples),
:mod:`~corredit.editors.mend.training` (the training loop),
:mod:`~corredit.editors.mend.io` (safetensors + JSON), :mod:`~corredit.editors.mend.editor`
(the registered editor).
"""

from corredit.editors.mend.data import MendExample, examples_from_requests, sample_batch, split_examples
from corredit.editors.mend.editor import Mend, MendHParams
from corredit.editors.mend.io import load_network, named_dir, resolve_network, save_network
from corredit.editors.mend.network import MendConfig, MendNetwork
from corredit.editors.mend.training import (
    MendTrainingHParams, TrainResult, network_config, train_mend, training_hparams,
)

__all__ = [
    "Mend", "MendHParams", "MendConfig", "MendNetwork", "MendExample", "MendTrainingHParams",
    "TrainResult", "examples_from_requests", "sample_batch", "split_examples", "train_mend",
    "training_hparams", "network_config", "load_network", "save_network", "resolve_network",
    "named_dir",
]
