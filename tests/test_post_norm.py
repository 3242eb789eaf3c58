"""MEMIT's residual targets through a norm after the MLP (Gemma-3)."""

from __future__ import annotations

import torch

from corredit.editors import get_editor
from corredit.editors.post_norm import mlp_output_change
from corredit.models.testing import TINY_TEXT, tiny_model
from corredit.stats import TextsCorpus, second_moments
from corredit.types import EditRequest


def _norm(d=16, seed=0):
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

    norm = Gemma3RMSNorm(d, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(d, generator=torch.Generator().manual_seed(seed)) * 0.5)
    return norm.double()


def test_reachable_target_is_met_exactly_and_zero_stays_zero():
    norm = _norm()
    g = torch.Generator().manual_seed(1)
    m = torch.randn(3, 16, generator=g, dtype=torch.float64) * 4
    # (up to the norm's eps: 1e-6 against mean(m^2) ~ 16)
    assert mlp_output_change(norm, m, torch.zeros_like(m)).abs().max() < 1e-5
    m2 = m + torch.randn(3, 16, generator=g, dtype=torch.float64)
    resid = norm(m2) - norm(m)
    change = mlp_output_change(norm, m, resid)
    torch.testing.assert_close(norm(m + change), norm(m2), rtol=1e-6, atol=1e-6)
    # the MLP output keeps its scale
    torch.testing.assert_close((m + change).pow(2).mean(-1), m.pow(2).mean(-1), rtol=1e-9, atol=0)
    # without the mapping the sum would move by the norm's gain and scale instead
    assert (norm(m + resid) - norm(m2)).abs().max() > 1e-2


def test_memit_on_gemma3_meets_its_targets_through_the_norm():
    h = tiny_model("Gemma3ForCausalLM", tokenizer="bos", seed=0)
    req = EditRequest(case_id="0", subject="Danielle Darrieux", relation_id="r",
                      prompt="The mother tongue of {} is", target_new="English", target_true="French")
    stats = second_moments(h, [0], TextsCorpus(TINY_TEXT.splitlines(), identity="tiny"), max_tokens=300)
    miss = {}
    for mapped in (True, False):
        ed = get_editor("memit")({"layers": [0], "post_norm_targets": mapped, "mom2_update_weight": 1e-3})
        res = ed.apply(h, [req], stats=stats, seed=0)
        miss[mapped] = res.diagnostics["target_miss"][0]
        ed.restore(h)
    assert miss[True] < 0.5 * miss[False], miss


def test_nearest_reachable_point_beats_matching_the_direction_when_gains_spread():
    """Gains from 0.01 to 500 (as Gemma-3's): the constrained nearest point has rms 1, is
    closer to an unreachable target than y/g rescaled to rms 1, and no random unit-rms
    point is closer."""
    from corredit.editors.post_norm import nearest_unit_rms

    g = torch.Generator().manual_seed(3)
    gain = torch.cat([torch.full((4,), 500.0), torch.rand(60, generator=g, dtype=torch.float64) + 0.01])
    v_true = torch.randn(2, 64, generator=g, dtype=torch.float64)
    v_true = v_true / v_true.pow(2).mean(-1, keepdim=True).sqrt()
    y = gain * v_true + 30 * torch.randn(2, 64, generator=g, dtype=torch.float64)
    v = nearest_unit_rms(gain, y)
    torch.testing.assert_close(v.pow(2).mean(-1), torch.ones(2, dtype=torch.float64))
    dist = (gain * v - y).norm(dim=-1)
    u = y / gain
    naive = (gain * u / u.pow(2).mean(-1, keepdim=True).sqrt() - y).norm(dim=-1)
    assert (dist < naive).all(), (dist, naive)
    other = torch.randn(2000, 64, generator=g, dtype=torch.float64)
    other = other / other.pow(2).mean(-1, keepdim=True).sqrt()
    for r in range(2):
        near = v[r] + 0.05 * other                                  # around the solution
        near = near / near.pow(2).mean(-1, keepdim=True).sqrt()
        assert ((gain * near - y[r]).norm(dim=-1) >= dist[r] - 1e-9).all()
    # a reachable target is met exactly
    torch.testing.assert_close(nearest_unit_rms(gain, gain * v_true), v_true)


def test_memit_optimises_gemma3_values_before_the_norm():
    from corredit.models import Site

    h = tiny_model("Gemma3ForCausalLM", tokenizer="bos", seed=0)
    ed = get_editor("memit")({"layers": [0, 1]})
    hp = ed.hparams_for(h)
    assert ed._value_sites(h, hp) == [Site("mlp_out", 1, "output")]
    assert ed._value_sites(h, hp.replace(post_norm_targets=False)) == [Site("block", 1, "output")]
    plain = tiny_model("LlamaForCausalLM", tokenizer="bos", seed=0)
    assert ed._value_sites(plain, ed.hparams_for(plain)) == [Site("block", 1, "output")]


def test_value_changes_are_normalised_changes_before_a_norm_and_deltas_elsewhere():
    """What the forecast and the targets read from a ValueResult: N(m0 + d) - N(m0) on
    Gemma-3 (value before the norm), the delta itself where the value is in the stream."""
    from corredit.editors.values import ValueResult

    for arch, mapped in (("Gemma3ForCausalLM", True), ("LlamaForCausalLM", False)):
        h = tiny_model(arch, tokenizer="bos", seed=0)
        ed = get_editor("memit")({"layers": [0, 1]})
        hp = ed.hparams_for(h)
        g = torch.Generator().manual_seed(0)
        v0 = torch.randn(3, 1, h.hidden_size, generator=g)
        d = torch.randn(3, 1, h.hidden_size, generator=g)
        z = torch.zeros(3)
        vres = ValueResult(["a", "b", "c"], d, v0, z, z, z, z, z.long(), z.bool(), z.bool(), z)
        got = ed.value_changes(h, hp, vres)
        if mapped:
            norm = h.adapter.post_norm_module(h.model, 1)
            want = (norm(v0[:, 0] + d[:, 0]) - norm(v0[:, 0])).double()
        else:
            want = d[:, 0].double()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
