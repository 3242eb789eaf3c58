"""Batched target scoring against one-at-a-time computation, and the probability suite
on a tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from corredit.evaluate import (
    encode_prompt,
    encode_target,
    score_probability,
    score_targets,
    summarize_probability,
    target_first_token_correct,
    target_nll,
)
from corredit.models.testing import tiny_model
from corredit.types import EditRequest

PROMPTS = [
    "The Eiffel Tower is located in the city of",
    "Rome is",
    "Danielle Darrieux was an actress. The mother tongue of Danielle Darrieux is",
    "He was born in",
    "Rome is",
    "Q",
    "The official language of Germany is",
    "He was born in",
]
TARGETS = [
    "Paris",
    "the capital of Italy",
    "French",
    "Xylophonia Quarternet",  # rare: several tokens
    "Paris",
    "Berlin",
    "German",
    "Xylophonia Quarternet",  # duplicate pair
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def h(tiny_h):
    return tiny_h


def unbatched(h, prompt, target):
    p = encode_prompt(h.tokenizer, prompt)
    t = encode_target(h.tokenizer, target)
    ids = torch.tensor([p + t])
    with torch.no_grad():
        logits = h.model(input_ids=ids).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    rows = torch.arange(len(p) - 1, len(p) - 1 + len(t))
    tok = torch.tensor(t)
    nll = -lp[rows, tok].mean().item()
    hits = (logits[rows].argmax(-1) == tok)
    return nll, bool(hits[0]), hits.double().mean().item(), len(t)


def test_tokenization_conventions(h):
    tok = h.tokenizer
    p = encode_prompt(tok, "Rome is")
    t = encode_target(tok, "Paris")
    bos = tok.bos_token_id
    if h.name.endswith("bos-seed1"):
        assert p[0] == bos and bos not in p[1:] and bos not in t  # BOS only at the start
        assert tok.convert_ids_to_tokens(t)[0].startswith("▁")
    else:
        assert bos not in p and bos not in t
        assert tok.convert_ids_to_tokens(t)[0].startswith("Ġ")
    assert tok.decode(p + t, skip_special_tokens=True).strip() == "Rome is Paris"


def test_dummy_prefix_tokenizer_gets_no_lone_space_token():
    from tokenizers import normalizers

    from corredit.evaluate import adds_word_prefix
    from corredit.models.testing import tiny_tokenizer

    tok = tiny_tokenizer("bos")  # rebuilt as Llama-2 tokenizers are: dummy prefix, no split
    assert not adds_word_prefix(tok)
    backend = tok.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                               normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None
    assert adds_word_prefix(tok)
    assert tok.convert_ids_to_tokens(tok(" Paris", add_special_tokens=False)["input_ids"]) \
        == ["▁", "▁Paris"]
    p, t = encode_prompt(tok, "Rome is"), encode_target(tok, "Paris")
    assert tok.convert_ids_to_tokens(t) == ["▁Paris"]
    assert p + t == tok("Rome is Paris")["input_ids"]  # as the text tokenizes whole
    # GPT-2 style: the space belongs to the target, even as a token of its own
    g = tiny_tokenizer("gpt2")
    assert not adds_word_prefix(g)
    assert g.convert_ids_to_tokens(encode_target(g, "(x)"))[0] == "Ġ"


def test_batched_equals_unbatched(h):
    lengths = {len(encode_prompt(h.tokenizer, p)) + len(encode_target(h.tokenizer, t))
               for p, t in zip(PROMPTS, TARGETS)}
    assert len(lengths) >= 5  # mixed lengths, so padding is exercised
    assert max(len(encode_target(h.tokenizer, t)) for t in TARGETS) >= 3
    ref = [unbatched(h, p, t) for p, t in zip(PROMPTS, TARGETS)]
    s = score_targets(h, PROMPTS, TARGETS, batch_size=3)
    np.testing.assert_allclose(s.nll, [r[0] for r in ref], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(s.first_token_correct, [r[1] for r in ref])
    np.testing.assert_allclose(s.token_accuracy, [r[2] for r in ref], atol=1e-12)
    np.testing.assert_array_equal(s.n_target_tokens, [r[3] for r in ref])
    assert s.nll[3] == s.nll[7] and s.nll[1] != s.nll[4]
    np.testing.assert_allclose(target_nll(h, PROMPTS, TARGETS, batch_size=64), s.nll, atol=1e-5)
    np.testing.assert_array_equal(
        target_first_token_correct(h, PROMPTS[:2], TARGETS[:2], batch_size=1),
        s.first_token_correct[:2])


def test_bad_input(h):
    with pytest.raises(ValueError, match="2 prompts but 1 targets"):
        target_nll(h, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="is empty"):
        target_nll(h, ["Rome is"], [" "])
    if h.tokenizer.bos_token_id not in encode_prompt(h.tokenizer, ""):
        with pytest.raises(ValueError, match="nothing to condition"):
            target_nll(h, [""], ["Paris"])
    assert target_nll(h, [], []).shape == (0,)


def _requests():
    return [
        EditRequest(case_id="0", subject="Rome", relation_id="capital_of", prompt="{} is the capital of",
                    target_new="Spain", target_true="Italy",
                    paraphrase_prompts=("The city of Rome is the capital of", "Rome, the capital of"),
                    neighborhood_prompts=("Milan is in", "The Colosseum is in")),
        EditRequest(case_id="1", subject="Toko Yasuda", relation_id="plays", prompt="{} plays the",
                    target_new="tennis", target_true="guitar",
                    paraphrase_prompts=("Toko Yasuda, a musician, plays the",),
                    neighborhood_prompts=("Serena Williams plays the", "Rome is the capital of")),
    ]


def test_score_probability_matches_direct_nlls_in_one_sweep():
    h = tiny_model("GPT2LMHeadModel", seed=2)
    reqs = _requests()
    calls = []
    hook = h.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        df = score_probability(h, reqs, batch_size=64)
    finally:
        hook.remove()
    # 10 prompts x 2 targets, every pair distinct: one batch of 20 rows
    assert calls == [1]
    assert set(df["metric"]) == {"ES", "EM", "PS", "PM", "NS", "NM", "nll_true", "nll_new"}
    assert (df["suite"] == "probability").all()

    def value(case, kind, i, metric):
        v = df[(df.case_id == case) & (df.prompt_kind == kind) & (df.prompt_index == i)
               & (df.metric == metric)]["value"]
        assert len(v) == 1
        return float(v.iloc[0])

    for req in reqs:
        kinds = [("rewrite", [req.rewrite_prompt]), ("paraphrase", req.paraphrase_prompts),
                 ("neighborhood", req.neighborhood_prompts)]
        for kind, prompts in kinds:
            prompts = list(prompts)
            t = target_nll(h, prompts, [req.target_true] * len(prompts))
            n = target_nll(h, prompts, [req.target_new] * len(prompts))
            score, mag = {"rewrite": ("ES", "EM"), "paraphrase": ("PS", "PM"),
                          "neighborhood": ("NS", "NM")}[kind]
            for i in range(len(prompts)):
                assert value(req.case_id, kind, i, "nll_true") == pytest.approx(t[i], abs=1e-5)
                good = t[i] < n[i] if kind == "neighborhood" else t[i] > n[i]
                assert value(req.case_id, kind, i, score) == float(good)
                sign = 1 if kind == "neighborhood" else -1
                assert value(req.case_id, kind, i, mag) == pytest.approx(
                    sign * (math.exp(-t[i]) - math.exp(-n[i])), abs=1e-5)
    s = summarize_probability(df)
    es = df[df.metric == "ES"]["value"].mean() * 100
    assert s["ES"] == pytest.approx(es)
    assert s["n_cases"] == 2


def test_score_probability_requires_true_target():
    h = tiny_model("GPT2LMHeadModel", seed=2)
    req = EditRequest(case_id="7", subject="Rome", relation_id="r", prompt="{} is in",
                      target_new="Spain")
    with pytest.raises(ValueError, match="'7'.*target_true"):
        score_probability(h, [req])


def test_first_rank_counts_the_logits_above_the_first_target_token(tiny_h):
    import torch

    h = tiny_h
    prompts, targets = ["Rome is", "The capital of France is"], ["Paris", "the city"]
    s = score_targets(h, prompts, targets)
    assert list(s.first_rank == 0) == list(s.first_token_correct)
    for p, t, r in zip(prompts, targets, s.first_rank):
        ids = torch.tensor([encode_prompt(h.tokenizer, p)])
        logits = h.model(input_ids=ids).logits[0, -1]
        assert r == int((logits > logits[encode_target(h.tokenizer, t)[0]]).sum())
