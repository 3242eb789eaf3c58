"""KN (knowledge neurons): integrated gradients against a direct computation and against
completeness, neuron selection, the written columns, and conformance on every tiny
architecture."""

from __future__ import annotations

import pytest
import torch

from corredit.editors import check_editor, get_editor
from corredit.editors.kn import attribution_scores, greedy_tokens, select_neurons
from corredit.editors.sequences import prompt_ids, target_ids
from corredit.models.testing import TINY_ARCHITECTURES, tiny_model
from corredit.types import EditRequest

REQUESTS = [
    EditRequest("1", "Danielle Darrieux", "P103", "The mother tongue of {} is", "German", "French",
                paraphrase_prompts=("Danielle Darrieux speaks", "The language of Danielle Darrieux is")),
    EditRequest("2", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("3", "Eiffel Tower", "P131", "The {} is located in the city of", "Berlin", "Paris"),
]

pytestmark = pytest.mark.usefixtures("one_thread")


def _tokenizer(arch: str) -> str:
    return "gpt2" if arch == "GPT2LMHeadModel" else "bos"


@pytest.fixture(scope="module", params=["GPT2LMHeadModel", "LlamaForCausalLM"])
def tiny(request):
    h = tiny_model(request.param, seed=0, tokenizer=_tokenizer(request.param))
    h.model.to(torch.float64)
    return h


def _direct_ig(h, ids: list[int], token: int, layer: int, steps: int) -> torch.Tensor:
    """Integrated gradients by plain hooks on the full sequence, one scaled copy at a time."""
    module = h.adapter.module(h.model, "mlp_out", layer)
    x = torch.tensor([ids])
    with torch.no_grad():
        seen = {}
        hd = module.register_forward_pre_hook(lambda m, a: seen.setdefault("k", a[0][0, -1].clone()))
        h.model(input_ids=x)
        hd.remove()
    k = seen["k"]
    total = torch.zeros_like(k)
    for alpha in torch.linspace(0, 1, steps, dtype=k.dtype):
        v = (alpha * k).clone().requires_grad_(True)

        def swap(m, a):
            h_ = a[0].clone()
            h_[0, -1] = v
            return (h_,)

        hd = module.register_forward_pre_hook(swap)
        try:
            p = torch.softmax(h.model(input_ids=x).logits[0, -1], -1)[token]
            total += torch.autograd.grad(p, v)[0]
        finally:
            hd.remove()
    return (k * total / steps).float()


def test_attribution_matches_a_direct_computation(tiny):
    """Teacher forced over a two-token answer: the cached one-token passes give what full
    passes with hooks give, per layer, averaged over the answer's tokens."""
    h = tiny
    prompt, answer = "The mother tongue of Danielle Darrieux is", "tennis"
    p, a = prompt_ids(h.tokenizer, prompt), target_ids(h.tokenizer, answer)
    assert len(a) >= 2
    [scores] = attribution_scores(h, [prompt], [answer], steps=7)
    assert scores.shape == (h.n_layers, h.key_size)
    for layer in range(h.n_layers):
        want = sum(_direct_ig(h, p + a[:i], a[i], layer, 7) for i in range(len(a))) / len(a)
        torch.testing.assert_close(scores[layer], want, rtol=1e-6, atol=1e-9)


def test_attribution_is_complete(tiny):
    """Integrated gradients sum to P(clean) - P(key zeroed) per layer (Riemann error only)."""
    h = tiny
    prompt, answer = "The Eiffel Tower is located in the city of", "Paris"
    ids, [tok] = prompt_ids(h.tokenizer, prompt), target_ids(h.tokenizer, answer)[:1]
    [scores] = attribution_scores(h, [prompt], [answer], steps=400)
    for layer in range(h.n_layers):
        module = h.adapter.module(h.model, "mlp_out", layer)

        def zero(m, a):
            x = a[0].clone()
            x[0, -1] = 0
            return (x,)

        with torch.no_grad():
            clean = torch.softmax(h.model(input_ids=torch.tensor([ids])).logits[0, -1], -1)[tok]
            hd = module.register_forward_pre_hook(zero)
            base = torch.softmax(h.model(input_ids=torch.tensor([ids])).logits[0, -1], -1)[tok]
            hd.remove()
        gap = float(clean - base)
        assert float(scores[layer].sum()) == pytest.approx(gap, rel=0.02, abs=1e-6)


def test_argmax_continuation_follows_the_model(tiny):
    """The reference's multi-token attribution: the prompt grows by the model's greedy
    tokens while the answer's tokens are scored."""
    h = tiny
    p = prompt_ids(h.tokenizer, "Toko Yasuda plays the")
    greedy = greedy_tokens(h, [p], 3)[0]
    with torch.no_grad():
        step = h.model(input_ids=torch.tensor([p + greedy[:2]])).logits[0, -1].argmax()
    assert len(greedy) == 3 and int(step) == greedy[2]
    a = target_ids(h.tokenizer, "tennis")
    [argmax] = attribution_scores(h, ["Toko Yasuda plays the"], ["tennis"], steps=4,
                                  continuation="argmax")
    want = sum(_direct_ig(h, p + greedy[:i], a[i], 0, 4) for i in range(len(a))) / len(a)
    torch.testing.assert_close(argmax[0], want, rtol=1e-6, atol=1e-9)


def test_select_neurons_threshold_and_refine():
    a = torch.zeros(2, 4)
    a[0, 1], a[1, 3], a[0, 2] = 1.0, 0.5, 0.1
    b = torch.zeros(2, 4)
    b[0, 1], b[1, 0] = 2.0, 1.5
    c = torch.zeros(2, 4)
    c[1, 3] = 1.0
    assert select_neurons([a], adaptive_threshold=0.2, p=0.4, refine=True) == [(0, 1), (1, 3)]
    # counts over three prompts: (0,1): 2, (1,3): 2, (1,0): 1 -> kept when count > 1.2
    assert select_neurons([a, b, c], adaptive_threshold=0.2, p=0.4, refine=True) == [(0, 1), (1, 3)]
    assert select_neurons([a, b, c], adaptive_threshold=0.2, p=0.4, refine=False) == \
        [(0, 1), (1, 0), (1, 3)]
    assert select_neurons([a], adaptive_threshold=0.6, p=0.4, refine=True) == [(0, 1)]


@pytest.mark.parametrize("erase", ["argmax", "true"])
def test_edit_writes_the_answer_vectors_into_the_selected_columns(tiny, erase):
    """Each selected neuron's column gains sign(a) * (scale E[new] - scale E[old]) (one-token
    answers: 2x; longer: 1x per token); no other column changes."""
    h = tiny
    ed = get_editor("kn")({"erase": erase, "embedding": "input", "n_prompts": 1,
                           "adaptive_threshold": 0.3})
    req = REQUESTS[2]
    _, acts = attribution_scores(h, [req.rewrite_prompt], [req.target_true], steps=2,
                                 activations=True)             # on the unedited model
    res = ed.apply(h, [req], seed=0)
    try:
        d = res.diagnostics
        emb = h.model.get_input_embeddings().weight.detach().double()
        new = target_ids(h.tokenizer, req.target_new)
        old = d["erased_tokens"][0]
        if erase == "true":
            assert old == target_ids(h.tokenizer, req.target_true)

        def vec(ids):
            return (2.0 if len(ids) == 1 else 1.0) * emb[ids].sum(0)

        want_vec = vec(new) - vec(old)
        chosen = d["neurons"][0]
        assert chosen and d["n_neurons"] == [len(chosen)]
        for layer in range(h.n_layers):
            dw = res.deltas[h.adapter.param_name("mlp_out", layer)].double()
            dw = dw.T if h.adapter.mlp_out_transposed else dw           # (d, d_k)
            cols = [i for (lay, i) in chosen if lay == layer]
            others = [i for i in range(h.key_size) if i not in cols]
            assert torch.count_nonzero(dw[:, others]) == 0
            for i in cols:
                sign = 1.0 if acts[0][layer, i] >= 0 else -1.0
                torch.testing.assert_close(dw[:, i], sign * want_vec, rtol=1e-5, atol=1e-5)
    finally:
        ed.restore(h)


def test_kn_needs_the_true_target(tiny):
    bad = EditRequest("x7", "Toko Yasuda", "P1303", "{} plays the", "tennis", None)
    with pytest.raises(ValueError, match="x7"):
        get_editor("kn")().apply(tiny, [bad])


def test_reference_settings_run(tiny):
    """EasyEdit's settings: rewrite prompt only, no refining, argmax continuation."""
    ed = get_editor("kn")({"refine": False, "n_prompts": 1, "continuation": "argmax",
                           "activation_sign": False, "embedding": "input", "erase": "argmax"})
    res = ed.apply(tiny, REQUESTS[:1])
    ed.restore(tiny)
    assert res.diagnostics["n_neurons"][0] >= 1


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_check_editor_every_tiny_architecture(arch):
    h = tiny_model(arch, seed=0, tokenizer=_tokenizer(arch))
    report = check_editor("kn", h, REQUESTS, None)
    assert all(a > b for a, b in zip(report["logprob_after"], report["logprob_before"]))
