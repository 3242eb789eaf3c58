"""Shared test configuration: paths to the shared benchmark data (skipped when absent),
single-threaded torch and the tiny two-tokenizer models of the scoring tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CORREDIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of public benchmark files; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for the module (exact batched-vs-unbatched comparisons)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["gpt2", "bos"])
def tiny_h(request):
    """A tiny GPT-2 (no BOS) and a tiny Llama whose tokenizer adds a BOS."""
    from corredit.models.testing import tiny_model

    arch = "GPT2LMHeadModel" if request.param == "gpt2" else "LlamaForCausalLM"
    return tiny_model(arch, seed=1, tokenizer=request.param)
