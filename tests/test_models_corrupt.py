"""load() on damaged model folders: messages name the file and what to do; the
``progress`` switch silences the loading bars."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from corredit.cli import main
from corredit.models import ModelNotFoundError, load
from corredit.models.testing import tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    h = tiny_model("LlamaForCausalLM", seed=2, tokenizer="bos")
    folder = tmp_path_factory.mktemp("tiny-llama")
    h.model.save_pretrained(folder)
    h.tokenizer.save_pretrained(folder)
    return folder


def copy_of(saved: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    return folder


def _bad_header(data: bytes) -> bytes:
    n = int.from_bytes(data[:8], "little")
    return data[:8] + b"{not json" + b" " * (n - 9) + data[8 + n:]


CORRUPTIONS = {
    "truncated": lambda data: data[: len(data) // 2],
    "header only": lambda data: data[:1000],
    "zero bytes": lambda data: b"",
    "random": lambda data: os.urandom(len(data)),
    "bad header": _bad_header,
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_damaged_safetensors_file_is_named(saved, tmp_path, how):
    folder = copy_of(saved, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(CORRUPTIONS[how](weights.read_bytes()))
    with pytest.raises(ModelNotFoundError) as exc:
        load(folder, device="cpu")
    msg = str(exc.value)
    assert str(weights) in msg and "damaged" in msg and "save_pretrained" in msg
    assert exc.value.__cause__ is not None


class _Code:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_refused_pickle_checkpoint_is_named(saved, tmp_path, capsys):
    folder = copy_of(saved, tmp_path)
    (folder / "model.safetensors").unlink()
    torch.save({"x": _Code()}, folder / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError) as exc:
        load(folder, device="cpu")
    msg = str(exc.value)
    assert str(folder / "pytorch_model.bin") in msg and "refused" in msg
    assert "safetensors" in msg and "this ran" not in capsys.readouterr().out


def test_a_truncated_pickle_checkpoint_is_named(saved, tmp_path):
    from safetensors.torch import load_file

    folder = copy_of(saved, tmp_path)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    binary = folder / "pytorch_model.bin"
    torch.save(state, binary)
    binary.write_bytes(binary.read_bytes()[:2000])
    with pytest.raises(ModelNotFoundError, match="damaged") as exc:
        load(folder, device="cpu")
    assert str(binary) in str(exc.value)


def test_a_damaged_tokenizer_file_is_named(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / "tokenizer.json").write_text("{oops")
    with pytest.raises(ModelNotFoundError) as exc:
        load(folder, device="cpu")
    assert str(folder / "tokenizer.json") in str(exc.value)


def test_the_command_line_reports_a_damaged_model_without_a_traceback(saved, tmp_path, capsys):
    folder = copy_of(saved, tmp_path)
    (folder / "model.safetensors").write_bytes(b"")
    code = main(["stats", "compute", "--model", str(folder), "--layers", "1",
                 "--corpus", "world", "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(folder / "model.safetensors") in err


def test_progress_off_silences_the_loading_bars(saved, capfd):
    from transformers.utils import logging as hf_logging

    capfd.readouterr()
    load(saved, device="cpu", progress=False)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the switch is put back
    load(saved, device="cpu")
    assert "Loading weights" in capfd.readouterr().err
