"""Trained MEND networks on disk: ``mend.safetensors`` (tensors) beside ``mend.json``
(shape, the model it was trained for, training settings and scores), and the training
checkpoint (one safetensors file whose header holds its JSON).

Usage::

    from corredit.editors.mend.io import save_network, load_network, resolve_network
    save_network(net, "runs/mend-world", meta={"training": {...}})
    net, meta = load_network("runs/mend-world")     # a folder, its mend.json, or a name:
    net, meta = load_network("world")               # $CORREDIT_CACHE/mend/world
    resolve_network("world")                        # the folder a name stands for

Files are written atomically (:mod:`corredit.atomic`); loading checks the format tag and
version and fails naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from corredit.atomic import atomic_path, atomic_write_text
from corredit.editors.mend.network import MendConfig, MendNetwork
from corredit.paths import cache_root

__all__ = ["FORMAT", "VERSION", "NETWORK_FILE", "META_FILE", "CHECKPOINT_FILE", "named_dir",
           "resolve_network", "save_network", "load_network", "save_checkpoint", "load_checkpoint"]

FORMAT = "corredit-mend"
VERSION = 1
NETWORK_FILE = "mend.safetensors"
META_FILE = "mend.json"
CHECKPOINT_FILE = "checkpoint.safetensors"


def named_dir(name: str) -> Path:
    """The folder of the network called ``name``: ``cache_root() / "mend" / name``."""
    if not name or "/" in name or os.sep in name or name in (".", ".."):
        raise ValueError(f"MEND network name {name!r} must be a plain name (a path contains '/')")
    return cache_root() / "mend" / name


def resolve_network(name_or_path: str | os.PathLike[str]) -> Path:
    """The folder holding a network: a folder, its ``mend.json``, or a name under
    :func:`named_dir`; the error lists where it looked."""
    p = Path(name_or_path).expanduser()
    tried = []
    for cand in (p.parent if p.name == META_FILE else p,):
        if (cand / META_FILE).is_file():
            return cand
        tried.append(cand)
    s = str(name_or_path)
    if s and "/" not in s and os.sep not in s:
        cand = named_dir(s)
        if (cand / META_FILE).is_file():
            return cand
        tried.append(cand)
    raise FileNotFoundError(
        f"no trained MEND network at {' or '.join(str(t) for t in tried)} (a folder with "
        f"{META_FILE} and {NETWORK_FILE}); train one with 'corredit train-editor mend "
        f"--model MODEL --data DATA --out DIR' (or --name NAME)")


def save_network(net: MendNetwork, folder: str | os.PathLike[str], *,
                 meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``net`` to ``folder`` (tensors, then the JSON that makes the folder loadable)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(folder / NETWORK_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "version": str(VERSION)})
    doc = {"format": FORMAT, "version": VERSION, "network": net.config.to_dict(), **dict(meta or {})}
    atomic_write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", folder / META_FILE)
    return folder


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a MEND network file (field 'format' must be {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise ValueError(f"{path}: field 'version' is {doc.get('version')!r}; this corredit "
                         f"reads version {VERSION}")
    if not isinstance(doc.get("network"), dict):
        raise ValueError(f"{path}: field 'network' (the network's shape) is missing")
    return doc


def load_network(name_or_path: str | os.PathLike[str]) -> tuple[MendNetwork, dict[str, Any]]:
    """The network saved at ``name_or_path`` (see :func:`resolve_network`) in eval mode,
    and its JSON document."""
    from safetensors.torch import load_file

    folder = resolve_network(name_or_path)
    doc = _read_meta(folder / META_FILE)
    cfg = MendConfig.from_dict(doc["network"], where=f"{folder / META_FILE} field 'network'")
    net = MendNetwork(cfg, seed=0)
    tensors_path = folder / NETWORK_FILE
    if not tensors_path.is_file():
        raise FileNotFoundError(f"{tensors_path}: missing (the tensors of {folder / META_FILE})")
    state = load_file(str(tensors_path))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{tensors_path}: tensors do not fit the network in "
                         f"{folder / META_FILE}: {exc}") from None
    net.eval()
    return net, doc


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{prefix}.{idx}.{key}"] = t.detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def _unflatten_optimizer(prefix: str, tensors: Mapping[str, torch.Tensor], groups: dict) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": groups["param_groups"]}


def save_checkpoint(folder: str | os.PathLike[str], net: MendNetwork,
                    optimizers: Mapping[str, torch.optim.Optimizer], meta: Mapping[str, Any]) -> Path:
    """One file with the network, the optimizers' states and ``meta`` (JSON in the header)."""
    from safetensors.torch import save_file

    path = Path(folder) / CHECKPOINT_FILE
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    groups = {}
    for name, opt in optimizers.items():
        t, g = _flatten_optimizer(f"opt_{name}", opt)
        tensors.update(t)
        groups[name] = g
    header = {"format": FORMAT, "kind": "checkpoint",
              "meta": json.dumps({**dict(meta), "optimizers": groups}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def load_checkpoint(folder: str | os.PathLike[str], net: MendNetwork,
                    optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, Any] | None:
    """Restore ``net`` and ``optimizers`` from ``folder``'s checkpoint; its meta, or None
    when there is no checkpoint."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata() or {}
    if header.get("format") != FORMAT or header.get("kind") != "checkpoint":
        raise ValueError(f"{path}: not a MEND training checkpoint")
    meta = json.loads(header["meta"])
    tensors = load_file(str(path))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, strict=True)
    for name, opt in optimizers.items():
        opt.load_state_dict(_unflatten_optimizer(f"opt_{name}", tensors, meta["optimizers"][name]))
    return meta
