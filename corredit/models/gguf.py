"""GGUF files as ordinary model folders: dequantise once, cache as safetensors.

Usage::

    from corredit.models.gguf import cached_gguf_folder
    folder = cached_gguf_folder("path/to/model.gguf")   # first call: minutes; later: instant
    # folder holds config.json, model.safetensors, the tokenizer and provenance.json

transformers reads GGUF files (it needs the ``gguf`` package) and dequantises them to
float32. The loaded model carries a quantization config that ``save_pretrained`` refuses,
so the model is rebuilt from its plain config and given the dequantised state dict. The
cache folder is ``<cache root>/models/<file stem>-<sha256[:16]>``: a changed file gets a
new folder; ``provenance.json`` records the file, its sha256 and the library versions.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from corredit.paths import cache_root

__all__ = ["cached_gguf_folder", "file_sha256", "gguf_cache_dir", "convert_gguf"]

_PROVENANCE = "provenance.json"


def file_sha256(path: "str | os.PathLike[str]", *, block: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_cache_dir(path: "str | os.PathLike[str]", sha256: str, root: Path | None = None) -> Path:
    """Where the converted folder of the GGUF file ``path`` with digest ``sha256`` lives."""
    base = (root if root is not None else cache_root()) / "models"
    return base / f"{Path(path).stem}-{sha256[:16]}"


def _complete(folder: Path, sha256: str) -> bool:
    prov = folder / _PROVENANCE
    if not (prov.is_file() and (folder / "config.json").is_file()):
        return False
    try:
        return json.loads(prov.read_text()).get("sha256") == sha256
    except (OSError, ValueError):
        return False


def convert_gguf(path: "str | os.PathLike[str]", out: "str | os.PathLike[str]", *,
                 sha256: str | None = None) -> Path:
    """Dequantise the GGUF file ``path`` into a save_pretrained folder ``out`` (written
    to a temporary sibling and renamed into place, so a killed conversion leaves nothing
    half-written). Raises ``ValueError`` naming the file when transformers cannot read it."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(path).expanduser().resolve()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file {src} does not exist")
    digest = sha256 or file_sha256(src)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    except ImportError:
        raise
    except Exception as exc:  # transformers raises many kinds for unreadable files
        raise ValueError(f"cannot read GGUF file {src}: {type(exc).__name__}: {exc}") from exc
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _PROVENANCE).write_text(json.dumps({
            "gguf_file": str(src), "sha256": digest, "dtype": "float32",
            "transformers": transformers.__version__, "torch": torch.__version__,
            "architecture": type(loaded).__name__,
        }, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def cached_gguf_folder(path: "str | os.PathLike[str]", *, root: Path | None = None) -> Path:
    """The cached save_pretrained folder of the GGUF file ``path``, converting it first
    when the cache has no folder for the file's current sha256."""
    src = Path(path).expanduser().resolve()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file {src} does not exist")
    digest = file_sha256(src)
    folder = gguf_cache_dir(src, digest, root)
    if not _complete(folder, digest):
        convert_gguf(src, folder, sha256=digest)
    return folder
