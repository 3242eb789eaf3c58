"""Causal tracing (corredit.locate) on tiny GPT-2 and Llama models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from corredit.locate import GROUPS, aggregate, profile_correlation, suggest_layers, token_groups, trace
from corredit.locate.tracing import patched_probabilities, subject_span, window_layers
from corredit.models.subject import prompt_token_ids
from corredit.models.targets import encode_target
from corredit.models.testing import tiny_model
from corredit.models.tracing import Replacement, Site
from corredit.models.tracing import trace as run_trace
from corredit.types import EditRequest

ARCHS = [("GPT2LMHeadModel", "gpt2"), ("LlamaForCausalLM", "bos")]

REQS = [
    EditRequest(case_id="a", subject="Danielle Darrieux", relation_id="lang",
                prompt="The mother tongue of {} is", target_new="German", target_true="French"),
    EditRequest(case_id="b", subject="Danielle Darrieux", relation_id="born",
                prompt="{} was born in the city of", target_new="Rome", target_true="Paris"),
    EditRequest(case_id="c", subject="Toko Yasuda", relation_id="plays",
                prompt="{} plays the", target_new="piano", target_true="guitar"),
]


@pytest.fixture(scope="module", params=ARCHS, ids=[a for a, _ in ARCHS])
def h(request):
    arch, tok = request.param
    return tiny_model(arch, tokenizer=tok, seed=0)


def _case(h, r):
    text = r.prompt.format(r.subject)
    return (prompt_token_ids(h.tokenizer, text), subject_span(h.tokenizer, text, r.subject),
            encode_target(h.tokenizer, r.target_true)[0])


def test_subject_span_covers_the_subject(h):
    for r in REQS:
        ids, (first, stop), _ = _case(h, r)
        decoded = h.tokenizer.decode(ids[first:stop]).replace(" ", "")
        assert decoded == r.subject.replace(" ", "")


def test_restoring_everything_recovers_the_clean_probability(h):
    ids, span, target = _case(h, REQS[0])
    n_layers = h.adapter.n_layers(h.model)
    noise = 5.0 * torch.randn(4, span[1] - span[0], h.hidden_size, generator=torch.Generator().manual_seed(0))
    everything = list(range(len(ids)))
    cells = [([], []), (everything, [0]), (everything, list(range(n_layers)))]
    probs, p_clean = patched_probabilities(h, ids, span, target, noise, cells, "hidden")
    assert abs(probs[0] - p_clean) > 1e-6                      # the noise does change the output
    np.testing.assert_allclose(probs[1:], p_clean, rtol=1e-5, atol=1e-7)
    probs, _ = patched_probabilities(h, ids, span, target, noise, [(everything, [0])], "hidden", batch_size=3)
    np.testing.assert_allclose(probs, p_clean, rtol=1e-5, atol=1e-7)  # split batches agree


def test_zero_noise_gives_zero_effects(h):
    for kind in ("hidden", "mlp", "attn"):
        rows = trace(h, REQS[:1], kind=kind, window=2, noise=0.0, samples=1)
        np.testing.assert_allclose(rows["effect"], 0.0, atol=1e-6)
        np.testing.assert_allclose(rows["total"], 0.0, atol=1e-6)


def test_same_seed_same_grid_and_shape(h):
    a = trace(h, REQS[:2], kind="mlp", window=2, samples=2, seed=7)
    b = trace(h, REQS[:2], kind="mlp", window=2, samples=2, seed=7)
    c = trace(h, REQS[:1], kind="mlp", window=2, samples=2, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.query("case_id == 'a'")["effect"], c["effect"])
    n_layers = h.adapter.n_layers(h.model)
    sizes = a.groupby("case_id").size()
    for r in REQS[:2]:
        assert sizes[r.case_id] == len(_case(h, r)[0]) * n_layers
    assert a["noise"].iloc[0] > 0 and (a["p_clean"] >= 0).all()


def test_aggregate_six_rows_and_suggestion(h):
    rows = trace(h, REQS, kind="hidden", samples=2, seed=0)
    agg = aggregate(rows, n_boot=50, seed=0)
    n_layers = h.adapter.n_layers(h.model)
    assert list(agg["group"].cat.categories) == list(GROUPS)
    assert set(agg["group"]) == set(GROUPS)
    assert len(agg) == 6 * n_layers
    assert (agg["lo"] <= agg["effect"] + 1e-12).all() and (agg["effect"] <= agg["hi"] + 1e-12).all()
    again = aggregate(rows, n_boot=50, seed=0)
    pd.testing.assert_frame_equal(agg, again)
    s = suggest_layers(agg, kind="hidden", max_width=2)
    assert 0 <= s["edit_layer"] < n_layers and s["edit_layer"] in s["memit_layers"]
    assert len(s["memit_layers"]) <= 2


def test_replacement_rows_and_positions(h):
    ids = torch.tensor([prompt_token_ids(h.tokenizer, "The Eiffel Tower is in")] * 2)
    site = Site("block", 0, "output")
    clean = run_trace(h, ids, read=[site])
    vec = torch.zeros(2, 2, h.hidden_size)
    res = run_trace(h, ids, read=[site], replace={site: Replacement(torch.tensor([[0, 2], [-1, -1]]), vec)})
    assert torch.equal(res.values[site][0, [0, 2]], vec[0])
    torch.testing.assert_close(res.values[site][0, 1], clean.values[site][0, 1])
    torch.testing.assert_close(res.values[site][1], clean.values[site][1])


def test_pure_helpers():
    assert token_groups(2, 4, 8) == {GROUPS[0]: [2], GROUPS[1]: [3], GROUPS[2]: [4], GROUPS[3]: [5],
                                     GROUPS[4]: [6], GROUPS[5]: [7]}
    assert token_groups(1, 1, 3)[GROUPS[3]] == [2] and token_groups(1, 1, 3)[GROUPS[4]] == []
    assert window_layers(5, 10, 48) == list(range(0, 10))
    assert window_layers(0, 10, 6) == [0, 1, 2, 3, 4] and window_layers(3, 1, 6) == [3]
    rows = pd.DataFrame([
        {"kind": "mlp", "case_id": c, "subject": s, "position": 0, "layer": l, "effect": e,
         "subject_first": 0, "subject_last": 0, "n_tokens": 1}
        for c, s, prof in (("x", "A", [0, 1, 0]), ("y", "A", [0, 2, 0.1]), ("z", "B", [1, 0, 0]))
        for l, e in enumerate(prof)])
    pairs, summary = profile_correlation(rows, n_boot=20)
    assert len(pairs) == 3 and pairs["same_subject"].sum() == 1
    diff = summary.set_index("measure").loc["profile_corr: same - different", "value"]
    assert diff > 0
