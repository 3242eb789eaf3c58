"""One target encoding: editors and evaluators agree on the ids of a target, on every
tokenizer family; the editors raise the target on a SentencePiece-style tokenizer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from corredit.editors import get_editor
from corredit.editors.sequences import prompt_ids, target_ids, target_logprobs
from corredit.evaluate.scoring import encode_prompt, encode_target, score_targets
from corredit.models.testing import tiny_model, tiny_tokenizer
from corredit.types import EditRequest

TARGETS = ["Paris", "French", "Danielle Darrieux", "the guitar", "(x)", "1"]


def _real_tokenizer(name: str):
    """The tokenizer of a registered real model: from its converted cache folder when
    there is one, else straight from its GGUF file (slower); skips when not installed."""
    from transformers import AutoTokenizer

    from corredit.models.catalog import MODELS, ModelNotInstalledError
    from corredit.paths import cache_root

    spec = MODELS.get(name)
    if not spec.is_installed():
        pytest.skip(f"{name} is not installed ({spec.install})")
    cached = sorted((cache_root() / "models").glob(f"{spec.gguf_stem}-*/tokenizer.json"))
    if cached:
        return AutoTokenizer.from_pretrained(cached[0].parent)
    try:
        path = Path(spec.locate())
    except ModelNotInstalledError as exc:  # pragma: no cover
        pytest.skip(str(exc))
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(scope="module", params=["gpt2", "bos", "spm", "smollm2-135m", "gemma3-270m"])
def tokenizer(request):
    if request.param in ("gpt2", "bos", "spm"):
        return tiny_tokenizer(request.param)
    return _real_tokenizer(request.param)


def test_editors_and_evaluators_encode_targets_alike(tokenizer):
    for t in TARGETS:
        ids = encode_target(tokenizer, t)
        assert target_ids(tokenizer, t) == ids
        # the target's ids are those it has inside a text (no lone word-start marker)
        whole = tokenizer("The answer is " + t, add_special_tokens=False)["input_ids"]
        assert whole[-len(ids):] == ids
    assert prompt_ids(tokenizer, "The answer is") == encode_prompt(tokenizer, "The answer is")


def test_spm_tokenizer_target_is_the_word_not_a_lone_marker():
    tok = tiny_tokenizer("spm")
    assert tok.convert_ids_to_tokens(tok(" Paris", add_special_tokens=False)["input_ids"]) == ["▁", "▁Paris"]
    assert tok.convert_ids_to_tokens(target_ids(tok, "Paris")) == ["▁Paris"]


def test_editor_quick_check_equals_evaluator_nll():
    h = tiny_model("LlamaForCausalLM", tokenizer="spm", seed=1)
    prompts = ["The capital of France is", "Toko Yasuda plays"]
    targets = ["Paris", "the guitar"]
    lp = target_logprobs(h, prompts, targets).numpy()
    nll = score_targets(h, prompts, targets).nll
    np.testing.assert_allclose(-lp, nll, rtol=1e-5)


def _request() -> EditRequest:
    return EditRequest(case_id="0", subject="Danielle Darrieux", relation_id="P103",
                       prompt="The mother tongue of {} is", target_new="English",
                       target_true="French")


@pytest.mark.parametrize("editor", ["ft-l", "rome", "memit"])
def test_editors_raise_the_target_on_a_sentencepiece_tokenizer(editor):
    from corredit.stats import TextsCorpus, second_moments

    h = tiny_model("LlamaForCausalLM", tokenizer="spm", seed=0)
    req = _request()
    ed = get_editor(editor)({"lr": 5e-2, "norm_constraint": 0.5} if editor == "ft-l" else None)
    layers = ed.hparams_for(h).layers
    stats = None
    if editor != "ft-l":
        from corredit.models.testing import TINY_TEXT

        stats = second_moments(h, list(layers), TextsCorpus(TINY_TEXT.splitlines(), identity="tiny"),
                               max_tokens=300)
    before = score_targets(h, [req.rewrite_prompt], [req.target_new]).nll[0]
    ed.apply(h, [req], stats=stats, seed=0)
    after = score_targets(h, [req.rewrite_prompt], [req.target_new]).nll[0]
    ed.restore(h)
    assert after < before - 0.1, (editor, before, after)
    assert score_targets(h, [req.rewrite_prompt], [req.target_new]).nll[0] == pytest.approx(before, abs=1e-6)
