"""The reference ``.npz`` layout of second-moment statistics (ROME / MEMIT ``layer_stats``).

Usage::

    from corredit.stats import save_npz, load_npz, reference_filename
    save_npz("stats/gpt2-xl/wikipedia_stats/transformer.h.17.mlp.c_proj_float32_mom2_100000.npz",
             mom[17])
    m = load_npz(path, layer=17)           # SecondMoment (sum float64, count)

The file holds the raw sum ``mom2.mom2`` (d_k x d_k) and the token count ``mom2.count``,
plus ``mom2.constructor`` and ``sample_size`` as the reference tools write them.
corredit's own cache adds a JSON string ``corredit.provenance``; other readers ignore it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corredit.atomic import atomic_path
from corredit.stats.moment import SecondMoment

__all__ = ["save_npz", "load_npz", "reference_filename"]

_PROVENANCE_KEY = "corredit.provenance"


def save_npz(path: str | Path, moment: SecondMoment, *, dtype: str = "float64",
             sample_size: int | None = None, provenance: bool = True) -> Path:
    """Write ``moment`` in the reference layout (atomically). ``dtype`` of the stored sum
    ("float64" or "float32", the reference's default precision); ``sample_size`` is the
    number of documents (the reference stores its requested sample count there)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"statistics file must end in .npz: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        "mom2.constructor": np.array("util.runningstats.SecondMoment()"),
        "mom2.count": np.array(int(moment.count)),
        "mom2.mom2": moment.sum.detach().cpu().numpy().astype(dtype),
    }
    if sample_size is None:
        sample_size = moment.provenance.get("documents")
    if sample_size is not None:
        arrays["sample_size"] = np.array(int(sample_size))
    if provenance and moment.provenance:
        arrays[_PROVENANCE_KEY] = np.array(json.dumps(moment.provenance, sort_keys=True))
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return path


def load_npz(path: str | Path, *, layer: int | None = None) -> SecondMoment:
    """Read a statistics file in the reference layout (sum converted to float64)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("mom2.mom2", "mom2.count") if k not in data.files]
        if missing:
            raise KeyError(f"{path}: not a second-moment statistics file, missing "
                           f"{', '.join(missing)} (has {', '.join(data.files)})")
        mom2 = np.asarray(data["mom2.mom2"], dtype=np.float64)
        count = int(data["mom2.count"])
        prov: dict[str, Any] = {}
        if _PROVENANCE_KEY in data.files:
            prov = json.loads(str(data[_PROVENANCE_KEY]))
        elif "sample_size" in data.files:
            prov = {"documents": int(data["sample_size"])}
    if mom2.ndim != 2 or mom2.shape[0] != mom2.shape[1]:
        raise ValueError(f"{path}: field 'mom2.mom2' must be square, got shape {mom2.shape}")
    if layer is None:
        layer = prov.get("layer")
    return SecondMoment(torch.from_numpy(mom2), count, layer, prov)


def reference_filename(module_name: str, *, dtype: str = "float32",
                       sample_size: int | None = None) -> str:
    """The reference tools' file name for one layer, e.g.
    ``reference_filename("transformer.h.17.mlp.c_proj", sample_size=100000)`` ->
    ``'transformer.h.17.mlp.c_proj_float32_mom2_100000.npz'``."""
    suffix = f"_{sample_size}" if sample_size is not None else ""
    return f"{module_name}_{dtype}_mom2{suffix}.npz"
