"""Teacher-forced, zsRE, multi-hop, generation and health suites on tiny models: numbers
against direct one-at-a-time computation, and the suite labels of their rows."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from corredit.evaluate import (
    encode_prompt,
    encode_target,
    generation_entropy,
    health_rows,
    multihop_units,
    ngram_entropy,
    norm_growth,
    perplexity,
    reference_scores,
    sample_texts,
    score_generation,
    score_multihop,
    score_teacher_forced,
    score_zsre,
    summarize_multihop,
    summarize_probability,
    summarize_teacher_forced,
    summarize_zsre,
    target_argmax,
    teacher_forced_reference,
    heldout_windows,
    token_perplexity,
)
from corredit.models import restore, snapshot, start_token_ids
from corredit.types import EditRequest, LocalityPrompt, MultiHopQuestion


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def h(tiny_h):
    return tiny_h


def requests() -> list[EditRequest]:
    return [
        EditRequest("a", "Danielle Darrieux", "lang", "The mother tongue of {} is", "English",
                    "French", paraphrase_prompts=("Danielle Darrieux speaks",
                                                  "Danielle Darrieux was an actress who spoke"),
                    neighborhood_prompts=("The official language of Italy is",),
                    generation_prompts=("Danielle Darrieux is", "Danielle Darrieux was born in"),
                    locality=(LocalityPrompt("The capital of France is", "Paris"),
                              LocalityPrompt("Big Ben is in", "the city of London"))),
        EditRequest("b", "Toko Yasuda", "plays", "{} plays the", "Xylophonia Quarternet",
                    "guitar", paraphrase_prompts=("Toko Yasuda is a musician who plays the",),
                    neighborhood_prompts=("Serena Williams plays", "Lionel Messi plays"),
                    generation_prompts=("Toko Yasuda is",)),
        EditRequest("c", "Rome", "capital_of", "{} is the capital of", "Spain", "Italy"),
    ]


def direct_token_accuracy(h, prompt: str, target: str) -> float:
    """The zsRE definition, one forward pass per target token: question + target[:i]."""
    p = encode_prompt(h.tokenizer, prompt)
    t = encode_target(h.tokenizer, target)
    hits = []
    with torch.no_grad():
        for i in range(len(t)):
            logits = h.model(input_ids=torch.tensor([p + t[:i]])).logits
            hits.append(int(logits[0, -1].argmax()) == t[i])
    return float(np.mean(hits))


# -- n-gram entropy ---------------------------------------------------------------------------

def test_ngram_entropy_exact_values():
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert ngram_entropy("a b a b", 2) == pytest.approx(h2)      # ab, ba, ab
    assert ngram_entropy("a b a b", 3) == pytest.approx(1.0)     # aba, bab
    assert generation_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert ngram_entropy("a, a,", 2) == pytest.approx(h2)        # punctuation is a word
    assert ngram_entropy("one two three four five", 2) == pytest.approx(2.0)   # 4 distinct
    assert generation_entropy("x x x x x x") == 0.0
    assert generation_entropy("x y") == pytest.approx((2 / 3 * 0.0) / 2)       # no trigram
    assert generation_entropy("") == 0.0


def test_reference_scores_cosine():
    corpus = ["Paris is a city in France", "Berlin is a city in Germany", "cats sleep"]
    s = reference_scores(["Paris France city", "cats sleep", "zzz"],
                         ["Paris is a city in France", "Paris is a city in France", "cats"],
                         corpus)
    assert s[0] > 0.5 and s[1] == 0.0 and s[2] == 0.0
    same = reference_scores(["Berlin Germany"], ["Berlin Germany"], corpus)
    assert same[0] == pytest.approx(1.0)


# -- zsRE and teacher-forced accuracy ---------------------------------------------------------

def test_zsre_token_accuracy_matches_definition_and_batching(h):
    reqs = requests()
    rows = score_zsre(h, reqs, batch_size=3)
    assert set(rows["suite"]) == {"zsre"}
    one = pd.concat([score_zsre(h, [r], batch_size=1) for r in reqs], ignore_index=True)
    pd.testing.assert_frame_equal(rows.reset_index(drop=True), one)
    expect = {("a", "rewrite", 0): ("The mother tongue of Danielle Darrieux is", "English"),
              ("a", "locality", 1): ("Big Ben is in", "the city of London"),
              ("b", "rewrite", 0): ("Toko Yasuda plays the", "Xylophonia Quarternet"),
              ("b", "paraphrase", 0): ("Toko Yasuda is a musician who plays the",
                                       "Xylophonia Quarternet")}
    got = rows.set_index(["case_id", "prompt_kind", "prompt_index"])["value"]
    for key, (p, t) in expect.items():
        assert got[key] == pytest.approx(direct_token_accuracy(h, p, t))
    kinds = rows.groupby("metric")["prompt_kind"].unique().to_dict()
    assert {k: list(v) for k, v in kinds.items()} == {
        "efficacy": ["rewrite"], "generalization": ["paraphrase"], "specificity": ["locality"]}
    assert len(rows) == 3 + 3 + 2  # rewrites, paraphrases, locality prompts of case a
    s = summarize_zsre(rows)
    assert s["n_cases"] == 3
    assert s["efficacy"] == pytest.approx(100 * rows[rows.metric == "efficacy"].value.mean())


def test_target_argmax_batched_equals_direct(h):
    prompts = ["Big Ben is in", "The capital of France is", "Rome"]
    targets = ["the city of London", "Paris", "is the capital of Italy"]
    got = target_argmax(h, prompts, targets, batch_size=2)
    for p, t, g in zip(prompts, targets, got):
        ids = encode_prompt(h.tokenizer, p) + encode_target(h.tokenizer, t)
        with torch.no_grad():
            best = h.model(input_ids=torch.tensor([ids])).logits[0].argmax(-1).numpy()
        n = len(encode_prompt(h.tokenizer, p))
        np.testing.assert_array_equal(g, best[n - 1:len(ids) - 1])


def test_teacher_forced_locality_and_accuracy(h):
    reqs = requests()
    ref = teacher_forced_reference(h, reqs, batch_size=2)
    rows = score_teacher_forced(h, reqs, reference=ref, batch_size=4)
    assert set(rows["suite"]) == {"teacher_forced"}
    loc = rows[rows.metric == "locality_acc"]
    # locality prompts of a; neighbourhood prompts with target_true for b; none for c
    assert sorted(zip(loc.case_id, loc.prompt_index)) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert (loc["value"] == 1.0).all()
    acc = rows[rows.metric != "locality_acc"]
    zs = score_zsre(h, reqs)
    zs = zs[zs.metric != "specificity"]
    np.testing.assert_allclose(acc["value"].to_numpy(), zs["value"].to_numpy())
    assert list(acc.metric) == ["rewrite_acc", "rephrase_acc", "rephrase_acc",
                                "rewrite_acc", "rephrase_acc", "rewrite_acc"]
    assert len(score_teacher_forced(h, reqs).query("metric == 'locality_acc'")) == 0

    name = h.adapter.param_name("mlp_out", 2)
    snap = snapshot(h.model, [name])
    try:
        with torch.no_grad():
            dict(h.model.named_parameters())[name].add_(
                torch.randn(snap[name].shape, generator=torch.Generator().manual_seed(0)) * 5)
        after = score_teacher_forced(h, reqs, reference=ref)
        assert after[after.metric == "locality_acc"]["value"].mean() < 1.0
        assert summarize_teacher_forced(after)["locality_acc"] < 100.0
    finally:
        restore(h.model, snap)
    with pytest.raises(KeyError, match="'c'"):
        other = EditRequest("c", "X", "r", "{} is", "y", locality=(LocalityPrompt("Q", "z"),))
        score_teacher_forced(h, [other], reference=ref)


# -- multi-hop --------------------------------------------------------------------------------

class BigramLM(torch.nn.Module):
    """A causal LM whose greedy next token after token ``u`` is ``table[u]``."""

    def __init__(self, vocab: int, table: dict[int, int]) -> None:
        super().__init__()
        self.logits = torch.nn.Embedding(vocab, vocab)
        with torch.no_grad():
            self.logits.weight.copy_(torch.rand(vocab, vocab, generator=torch.Generator().manual_seed(0)))
            for u, v in table.items():
                self.logits.weight[u, v] = 10.0

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        return SimpleNamespace(logits=self.logits(input_ids))


def forced_handle(h, question: str, answer: str):
    """A handle on ``h``'s tokenizer whose greedy continuation of ``question`` is
    ``" " + answer`` (then anything)."""
    chain = [encode_prompt(h.tokenizer, question)[-1], *encode_target(h.tokenizer, answer)]
    assert len(set(chain)) == len(chain)
    model = BigramLM(len(h.tokenizer), dict(zip(chain[:-1], chain[1:])))
    return SimpleNamespace(model=model.eval(), tokenizer=h.tokenizer, device="cpu")


@pytest.mark.parametrize("question", ["The capital of France is", "What is the name of the"])
def test_multihop_forced_answer(h, question):
    forced = "Bill Gates"
    hf = forced_handle(h, question, forced)
    # the same question with the forced answer as new answer, as an alias, and as old answer
    reqs = [
        EditRequest("g:0", "S", "r", "{} is", "x", group_id="g",
                    multi_hop=(MultiHopQuestion("A question nobody asks", "zq", "qz"),
                               MultiHopQuestion(question, "Paris", forced))),
        EditRequest("g:1", "S", "r", "{} was", "y", group_id="g"),
        EditRequest("alias", "S", "r", "{} is", "x",
                    multi_hop=(MultiHopQuestion(question, "Paris", "Quarternet",
                                                new_answer_aliases=(forced,)),)),
        EditRequest("old", "S", "r", "{} is", "x",
                    multi_hop=(MultiHopQuestion(question, forced, "Xylophonia"),
                                               MultiHopQuestion(question, "Rome", "Paris"))),
        EditRequest("same", "S", "r", "{} is", "x",
                    multi_hop=(MultiHopQuestion(question, forced, forced),)),
        EditRequest("none", "S", "r", "{} is", "x"),
    ]
    assert [c for c, _ in multihop_units(reqs)] == ["g:0", "alias", "old", "same"]
    rows = score_multihop(hf, reqs, batch_size=2)
    assert set(rows["suite"]) == {"multihop"}
    acc = rows[rows.metric == "multihop_acc"].set_index("case_id")["value"].to_dict()
    assert acc == {"g:0": 1.0, "alias": 1.0, "old": 0.0}      # "same": answer unchanged
    q = rows[rows.prompt_kind == "question"].set_index(["case_id", "prompt_index", "metric"])["value"]
    assert q[("g:0", 1, "new_answer")] == 1.0 and q[("g:0", 0, "new_answer")] == 0.0
    assert q[("old", 0, "old_answer")] == 1.0 and q[("old", 0, "new_answer")] == 0.0
    assert q[("same", 0, "answer_changed")] == 0.0 and q[("old", 0, "answer_changed")] == 1.0
    assert summarize_multihop(rows)["multihop_acc"] == pytest.approx(200 / 3)


# -- generation -------------------------------------------------------------------------------

def test_sampling_top1_is_greedy_decoding(h):
    prompts = ["The Eiffel Tower is", "Paris is the capital of", "Rome"]
    texts = sample_texts(h, prompts, max_new_tokens=8, top_k=1, batch_size=2)
    for p, t in zip(prompts, texts):
        ids = encode_prompt(h.tokenizer, p)
        with torch.no_grad():
            out = h.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                   max_new_tokens=8, do_sample=False, min_new_tokens=8,
                                   pad_token_id=h.tokenizer.pad_token_id)
        assert t == h.tokenizer.decode(out[0].tolist(), skip_special_tokens=True)


def test_sampling_seeded_and_batch_independent(h):
    prompts = ["The Eiffel Tower is", "Rome is", "The Eiffel Tower is", "He was born in"]
    keys = ["0", "1", "2", "3"]
    a = sample_texts(h, prompts, keys=keys, max_new_tokens=12, seed=3, batch_size=4)
    b = sample_texts(h, prompts, keys=keys, max_new_tokens=12, seed=3, batch_size=1)
    c = sample_texts(h, prompts, keys=keys, max_new_tokens=12, seed=4, batch_size=4)
    assert a == b and a != c
    assert a[0] != a[2]  # same prompt, other key: another draw


def test_score_generation_rows(h):
    reqs = requests()
    snippets = {"English": ["English is spoken in London.", "English is a language."],
                "Xylophonia Quarternet": ["Xylophonia Quarternet is an instrument."],
                "Spain": ["Madrid is the capital of Spain."]}
    rows = score_generation(h, reqs, snippets=snippets, max_new_tokens=10, seed=0)
    assert set(rows["suite"]) == {"probability"} and set(rows["prompt_kind"]) == {"generation"}
    ge = rows[rows.metric == "GE"]
    assert sorted(zip(ge.case_id, ge.prompt_index)) == [("a", 0), ("a", 1), ("b", 0)]
    assert (ge["value"] > 0).all() and (ge["value"] <= math.log2(30) + 1e-9).all()
    rs = rows[rows.metric == "RS"]
    assert list(rs.case_id) == ["a", "b"] and ((rs.value >= 0) & (rs.value <= 1)).all()
    again = score_generation(h, reqs, snippets=snippets, max_new_tokens=10, seed=0, batch_size=1)
    pd.testing.assert_frame_equal(rows, again)
    assert math.isnan(summarize_probability(rows)["ES"])  # generation rows are not ES rows
    with pytest.raises(KeyError, match="'b'.*Xylophonia"):
        score_generation(h, reqs[:2], snippets={"English": ["x"]}, max_new_tokens=2)


# -- health -----------------------------------------------------------------------------------

def test_perplexity_is_exp_mean_token_nll(h):
    texts = ["The river Thames flows through London.", "A cat.", "",
             "Paris is the capital of France. Berlin is the capital of Germany."]
    start = start_token_ids(h.tokenizer)
    adds_bos = h.tokenizer("a")["input_ids"] != h.tokenizer("a", add_special_tokens=False)["input_ids"]
    assert start == ([h.tokenizer.bos_token_id] if adds_bos else [])
    step = 8 - len(start)                       # max_length 8, every window after the start
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            plain = h.tokenizer(t, add_special_tokens=False)["input_ids"]
            for w in (start + plain[:step], start + plain[step:2 * step]):
                if len(w) < 2:
                    continue
                x = torch.tensor([w])
                loss = h.model(input_ids=x, labels=x).loss
                total += float(loss) * (len(w) - 1)
                count += len(w) - 1
    assert len(h.tokenizer(texts[3], add_special_tokens=False)["input_ids"]) <= 2 * step
    got = perplexity(h, texts, batch_size=2, max_length=8)
    assert got == pytest.approx(math.exp(total / count), rel=1e-5)
    assert token_perplexity(h, [[5, 6, 7], [8, 9]], batch_size=1) == pytest.approx(
        token_perplexity(h, [[8, 9], [5, 6, 7]], batch_size=2), rel=1e-6)
    with pytest.raises(ValueError, match="no window"):
        perplexity(h, ["", "   "])


def test_heldout_windows_start_as_prompts_do(h):
    texts = ["The river Thames flows through London.", "",
             "Paris is the capital of France. Berlin is the capital of Germany."]
    start = start_token_ids(h.tokenizer)
    windows = heldout_windows(h.tokenizer, texts, max_tokens=20, max_length=8)
    # each window begins as a prompt does (the BOS of a BOS-adding tokenizer) ...
    assert all(w[:len(start)] == start for w in windows)
    assert windows[0][:3] == encode_prompt(h.tokenizer, texts[0])[:3]
    # ... and after the start tokens the windows are the joined text stream, cut at max_tokens
    stream = [t for w in windows for t in w[len(start):]]
    plain = [h.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts if t]
    joined = plain[0] + [h.tokenizer.eos_token_id] + plain[1]
    assert len(joined) > 20 and stream == joined[:20]   # (no one-token window dropped here)
    assert max(len(w) for w in windows) == 8
    with pytest.raises(ValueError, match="no room"):
        heldout_windows(h.tokenizer, texts, max_tokens=20, max_length=len(start))


def test_start_token_ids_refuses_a_tokenizer_it_cannot_read():
    class Odd:                                   # special tokens change the text's own ids
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [1, 7, 8] if add_special_tokens else [5]}

    with pytest.raises(ValueError, match="Odd: 'text' encodes as"):
        start_token_ids(Odd())


def test_norm_growth_on_hand_edited_matrix(h):
    names = [h.adapter.param_name("mlp_out", 1), h.adapter.param_name("mlp_out", 2)]
    snap = snapshot(h.model, names)
    try:
        with torch.no_grad():
            W = dict(h.model.named_parameters())[names[0]]
            W.mul_(3.0)
        growth = norm_growth(snap, h.model)
        assert growth[names[0]] == pytest.approx(3.0) and growth[names[1]] == 1.0
        with torch.no_grad():  # an orthogonal addition: ||W + D||^2 = ||W||^2 + ||D||^2
            W.copy_(snap[names[0]])
            D = torch.randn_like(W)
            D -= (D * W).sum() / (W * W).sum() * W
            W.add_(D)
        expect = math.sqrt(1 + float(D.norm()) ** 2 / float(snap[names[0]].norm()) ** 2)
        assert norm_growth(snap, h.model)[names[0]] == pytest.approx(expect, rel=1e-5)
    finally:
        restore(h.model, snap)
    rows = health_rows(perplexity=12.5, norm_growth=norm_growth(snap, h.model))
    assert set(rows["suite"]) == {"health"} and set(rows["case_id"]) == {""}
    assert list(rows.prompt_kind) == ["model", *names]
    assert list(rows.metric) == ["perplexity", "norm_growth", "norm_growth"]
    with pytest.raises(KeyError, match="no parameter"):
        norm_growth({"nope.weight": torch.ones(2)}, h.model)
