"""Load a causal language model with its tokenizer and architecture adapter.

Usage::

    from corredit.models import load
    h = load("path/to/folder")          # or a Hub name in the local cache, or "world"
    h = load("smollm2-135m")            # a registered model (corredit models list)
    h = load("path/to/model.gguf")      # any GGUF file transformers reads
    h = load("world", progress=False)   # no loading bars

Damaged or refused weight files raise :class:`ModelNotFoundError` naming the file and
what to do; a name that is neither a folder, a file, a registered model nor in the Hub
cache says why (offline mode, no connection).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from corredit.models.handle import (
    MODEL_ALIASES, ModelHandle, ModelNotFoundError, default_device, wrap,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["load"]


def _is_path_like(name: str) -> bool:
    """True for names that can only be meant as local paths (never Hub ids)."""
    return os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "vocab.txt")
_OFFLINE = "is unreachable (offline mode: HF_HUB_OFFLINE=1)"


def _hub_offline() -> bool:
    """True when Hugging Face offline mode is on (environment or huggingface_hub)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _hub_reachable(timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the Hub's endpoint opens within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        endpoint = urlparse(constants.ENDPOINT)
    except Exception:  # pragma: no cover
        endpoint = urlparse("https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _not_found(name: str, detail: str, hub: str = "is unreachable") -> ModelNotFoundError:
    return ModelNotFoundError(
        f"model {name!r} could not be found: {detail}, it is not in the local Hugging Face "
        f"cache, and the Hugging Face Hub {hub}. Pass a local folder holding config.json, "
        f"the weights and the tokenizer (as written by save_pretrained), e.g. "
        f"load('/path/to/model'), or load('world') for the embedded model"
    )


_SAFETENSORS = "*.safetensors"
_PICKLED = ("pytorch_model*.bin", "*.pt", "*.pth")


def _files(folder: Path, patterns: Sequence[str]) -> list[Path]:
    """The files of ``folder`` matching any of ``patterns``."""
    return sorted({f for pat in patterns for f in folder.glob(pat) if f.is_file()})


def _first_bad_safetensors(files: Sequence[Path]) -> Path | None:
    """The first of ``files`` whose safetensors header does not read, or None."""
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover
        return None
    for f in files:
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception:  # noqa: BLE001 - any failure marks the file as the damaged one
            return f
    return None


def _damaged(source: str, exc: BaseException) -> ModelNotFoundError | None:
    """A :class:`ModelNotFoundError` naming the weights file behind ``exc`` when ``exc``
    says a checkpoint is damaged or refused; None for any other failure."""
    import pickle

    where = Path(source).expanduser() if Path(source).expanduser().is_dir() else None
    name, text = type(exc).__name__, str(exc)
    redo = "delete it and write the model again with save_pretrained (or download it again)"
    if name == "SafetensorError" or (isinstance(exc, OSError) and "safetensors" in text.lower()):
        files = _files(where, (_SAFETENSORS,)) if where else []
        bad = _first_bad_safetensors(files) or (files[0] if len(files) == 1 else None)
        what = str(bad) if bad else (", ".join(map(str, files)) or f"a weights file of {source}")
        return ModelNotFoundError(f"cannot load model {source}: the weights file {what} is "
                                  f"damaged (truncated, empty or not safetensors: {text}); {redo}")
    files = _files(where, _PICKLED) if where else []
    what = ", ".join(map(str, files)) or f"the pickled weights file of {source}"
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in text.lower():
        return ModelNotFoundError(
            f"cannot load model {source}: the pickled checkpoint {what} holds objects other than "
            f"tensors and was refused (loading it could run code); get model.safetensors "
            f"instead, or convert the checkpoint with a trusted copy (load it, then "
            f"save_pretrained writes safetensors)")
    if isinstance(exc, (pickle.UnpicklingError, EOFError)) or (
            isinstance(exc, RuntimeError) and ("PytorchStreamReader" in text
                                               or "zip archive" in text)):
        return ModelNotFoundError(f"cannot load model {source}: the weights file {what} is "
                                  f"damaged (truncated or not a PyTorch checkpoint: "
                                  f"{text.splitlines()[0] if text else name}); {redo}")
    return None


def _from_pretrained(source: str, dtype: Any, local_only: bool) -> tuple[Any, Any]:
    """Tokenizer and model; a damaged or refused file raises a
    :class:`ModelNotFoundError` that names it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(source).expanduser()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except Exception as exc:  # OSError (missing or unreadable config) keeps its own message
        if not folder.is_dir() or isinstance(exc, (OSError, ImportError)):
            raise
        files = ", ".join(str(folder / f) for f in _TOKENIZER_FILES if (folder / f).is_file())
        raise ModelNotFoundError(f"cannot load model {source}: its tokenizer files ({files}) "
                                 f"could not be read ({type(exc).__name__}: {exc}); write them "
                                 f"again with tokenizer.save_pretrained") from exc
    if len(tokenizer) < 2:  # transformers builds an empty tokenizer when its files are missing
        raise OSError(f"the tokenizer of {source} is empty (vocabulary of {len(tokenizer)}); its files are missing")
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local_only)
    except Exception as exc:
        damaged = _damaged(source, exc)
        if damaged is None:
            raise
        raise damaged from exc
    return model, tokenizer


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Inside ``with``: transformers' and huggingface_hub's progress bars off unless
    ``enabled``; the previous setting comes back on exit."""
    restore: list[Callable[[], None]] = []
    if not enabled:
        from huggingface_hub import utils as hub
        from transformers.utils import logging as hf_logging

        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            restore.append(hf_logging.enable_progress_bar)
        if not hub.are_progress_bars_disabled():
            hub.disable_progress_bars()
            restore.append(hub.enable_progress_bars)
    try:
        yield
    finally:
        for undo in restore:
            undo()


def load(name_or_path: "str | os.PathLike[str]", *, device: "str | torch.device | None" = None,
         dtype: "str | torch.dtype | None" = None, progress: bool = True) -> ModelHandle:
    """Load a causal LM and its tokenizer from a local folder, a GGUF file (dequantised
    once and cached), a registered model name (``"smollm2-135m"``, ``"gemma3-270m"``: see
    :mod:`corredit.models.catalog`), the local Hub cache, a Hub name, or a registered
    alias (``"world"``: the embedded default world model).

    ``device`` defaults to :func:`default_device`; ``dtype`` defaults to float32
    (``"auto"`` keeps the checkpoint's type; strings like ``"bfloat16"`` are accepted).
    ``progress=False`` silences the loading and download progress bars.
    Raises :class:`ModelNotFoundError` when the model cannot be found, or when a file of
    it is damaged or refused (the message names the file).
    """
    import torch

    from corredit.models.catalog import MODELS, resolve_model_folder
    from corredit.models.gguf import cached_gguf_folder

    name = os.fspath(name_or_path)
    spec = None
    if name in MODEL_ALIASES:
        name = os.fspath(MODEL_ALIASES.get(name)())
        if not Path(name).is_dir():
            raise _not_found(name, f"the alias {os.fspath(name_or_path)!r} names a missing folder")
    elif name in MODELS:
        with _progress_bars(progress):
            folder, spec = resolve_model_folder(name)
        name = os.fspath(folder)
    elif name.endswith(".gguf") and Path(name).expanduser().is_file():
        with _progress_bars(progress):
            name = os.fspath(cached_gguf_folder(name))
    if dtype is None:
        dtype = torch.float32
    elif isinstance(dtype, str) and dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16' or 'auto'")
        dtype = resolved

    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(
                f"cannot load a model from folder {local}: it has no config.json (expected a "
                f"folder written by save_pretrained, with the model and its tokenizer)"
            )
        if not any((local / f).is_file() for f in _TOKENIZER_FILES):
            raise ModelNotFoundError(
                f"cannot load a model from folder {local}: it has no tokenizer files (one of "
                f"{', '.join(_TOKENIZER_FILES)}); save the tokenizer there too with "
                f"tokenizer.save_pretrained(folder)"
            )
        try:
            with _progress_bars(progress):
                model, tokenizer = _from_pretrained(str(local), dtype, local_only=True)
        except ModelNotFoundError:
            raise
        except (OSError, ValueError) as exc:  # incomplete folder: keep the loader's reason
            raise ModelNotFoundError(f"cannot load a model from folder {local}: {exc}") from exc
        source = str(local)
    elif local.exists():
        raise _not_found(name, f"{local} is a file, not a model folder")
    elif _is_path_like(name):
        hub = _OFFLINE if _hub_offline() else "is not asked for a file-system path"
        raise _not_found(name, f"there is no local folder {local.resolve()}", hub)
    else:
        with _progress_bars(progress):
            model, tokenizer = _from_hub(name, dtype)
        source = name
    model.to(torch.device(device) if device is not None else default_device())
    h = wrap(model, tokenizer, name=spec.name if spec is not None else source)
    if spec is not None:
        h.document_start = spec.document_start
        if spec.prepend_document_start:
            from corredit.models.catalog import prepend_document_start

            prepend_document_start(h.tokenizer, spec.document_start)
    return h


def _from_hub(name: str, dtype: Any) -> tuple[Any, Any]:
    """From the local Hub cache, else (online only) from the Hub itself."""
    missing = "there is no local folder of that name"
    try:
        return _from_pretrained(name, dtype, local_only=True)
    except ModelNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and "repo" not in str(exc).lower():
            raise
        if _hub_offline():
            raise _not_found(name, missing, _OFFLINE) from exc
    if not _hub_reachable():
        raise _not_found(name, missing, "is unreachable (no connection)")
    try:
        return _from_pretrained(name, dtype, local_only=False)
    except ModelNotFoundError:
        raise
    except OSError as exc:
        raise _not_found(name, missing, f"could not provide it ({exc})") from exc
