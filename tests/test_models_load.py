"""load(): local folders, offline errors, the "world" alias; wrap()."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from corredit.models import MODEL_ALIASES, ModelNotFoundError, load, wrap
from corredit.models.testing import tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    h = tiny_model("LlamaForCausalLM", seed=2, tokenizer="bos")
    folder = tmp_path_factory.mktemp("tiny-llama")
    h.model.save_pretrained(folder)
    h.tokenizer.save_pretrained(folder)
    return h, folder


def test_load_local_folder(saved):
    h, folder = saved
    loaded = load(folder, device="cpu")
    assert loaded.name == str(folder)
    assert type(loaded.model) is type(h.model) and loaded.adapter is h.adapter
    assert not loaded.model.training and loaded.dtype == torch.float32
    assert loaded.device == torch.device("cpu")
    assert loaded.tokenizer.pad_token is not None and loaded.tokenizer.padding_side == "right"
    text = ["The Eiffel Tower is located in", "Paris"]
    assert loaded.encode(text)["input_ids"].tolist() == h.encode(text)["input_ids"].tolist()
    batch = h.encode(text)
    with torch.no_grad():
        assert torch.equal(loaded.model(**batch).logits, h.model(**batch).logits)
    assert load(str(folder), dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        load(folder, dtype="float99")


def test_missing_path_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as info:
        load(missing)
    text = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "could not be found" in text and str(missing) in text
    assert "Hub is unreachable" in text and "HF_HUB_OFFLINE" in text
    assert "local folder" in text and "load('/path/to/model')" in text
    with pytest.raises(ModelNotFoundError, match="'someorg/no-such-model-x'.*unreachable"):
        load("someorg/no-such-model-x")


def test_incomplete_folder_and_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="cannot load a model from folder"):
        load(tmp_path / "empty")
    h = tiny_model("GPT2LMHeadModel")
    h.model.save_pretrained(tmp_path / "no-tokenizer")
    with pytest.raises(ModelNotFoundError, match="cannot load a model from folder .*no-tokenizer"):
        load(tmp_path / "no-tokenizer")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        load(tmp_path / "file.bin")


def test_world_alias_resolves_lazily(saved, monkeypatch):
    _, folder = saved
    assert "world" in MODEL_ALIASES
    fake = types.ModuleType("corredit.world")
    fake.default_model_dir = lambda: folder
    monkeypatch.setitem(sys.modules, "corredit.world", fake)
    h = load("world")
    assert h.name == str(folder) and h.n_layers == 3

    monkeypatch.setitem(sys.modules, "corredit.world", types.ModuleType("corredit.world"))
    with pytest.raises(ModelNotFoundError, match="default_model_dir"):
        load("world")
    fake.default_model_dir = lambda: folder / "gone"
    monkeypatch.setitem(sys.modules, "corredit.world", fake)
    with pytest.raises(ModelNotFoundError, match="alias 'world' names a missing folder"):
        load("world")


def test_wrap_sets_pad_and_eval():
    h = tiny_model("GPT2LMHeadModel")
    h.model.train()
    h.tokenizer.pad_token = None
    h.tokenizer.padding_side = "left"
    w = wrap(h.model, h.tokenizer, name="again")
    assert w.name == "again" and not w.model.training
    assert w.tokenizer.pad_token == w.tokenizer.eos_token and w.tokenizer.padding_side == "right"
    assert w.device == torch.device("cpu")
