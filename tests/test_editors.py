"""Editors: the shared engine, the conformance check over the registry, closed-form
identities, modes, and the batched value optimisation against the per-fact loop."""

from __future__ import annotations

import dataclasses

from pathlib import Path

import pytest
import torch

from corredit.editors import (
    EDITORS,
    EditResult,
    MaskedAdam,
    MemitHParams,
    RomeHParams,
    ValueOptimizer,
    check_editor,
    default_hparams,
    get_editor,
    units_from_requests,
)
from corredit.editors.keys import KeyReader
from corredit.editors.sequences import subject_position, target_logprobs
from corredit.editors.templates import TemplateSampler
from corredit.models import Site, SubjectNotFoundError, trace
from corredit.models.testing import TINY_TEXT, tiny_model
from corredit.registry import UnknownNameError
from corredit.stats import TextsCorpus, second_moments
from corredit.types import EditRequest

TEXTS = [line for line in TINY_TEXT.splitlines() if line.strip()]

REQUESTS = [
    EditRequest("1", "Danielle Darrieux", "P103", "The mother tongue of {} is", "German", "French"),
    EditRequest("2", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("3", "Eiffel Tower", "P131", "The {} is located in the city of", "Berlin", "Paris"),
]


def _tiny(arch="GPT2LMHeadModel", tokenizer="gpt2", dtype=torch.float32):
    h = tiny_model(arch, seed=0, tokenizer=tokenizer)
    h.model.to(dtype)
    mom = second_moments(h, range(h.n_layers), TextsCorpus(TEXTS * 20, identity="tiny-text"),
                         max_tokens=4000)
    return h, mom


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest


@pytest.fixture(scope="module")
def gpt2():
    return _tiny()


@pytest.fixture(scope="module")
def llama():
    return _tiny("LlamaForCausalLM", "bos")


@pytest.fixture(scope="module")
def gpt2_f64():
    return _tiny(dtype=torch.float64)


# -- registry and hyperparameters ------------------------------------------------------

def test_registry_lists_the_editors_and_names_unknown_ones():
    assert {"ft-l", "ft-m", "rome", "memit"} <= set(EDITORS.names())
    with pytest.raises(UnknownNameError, match="rome"):
        get_editor("no-such-editor")


def test_hparams_are_frozen_knobs_resolved_from_the_defaults_file(tmp_path):
    hp = RomeHParams(layer=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.layer = 4  # type: ignore[misc]
    assert all(not isinstance(v, str) or "." not in v or "{}" in v
               for v in hp.to_dict().values()), "no module paths among the knobs"
    path = tmp_path / "d.toml"
    path.write_text('[rome."*"]\nlayer = 1\nv_lr = 0.1\n'
                    '[rome."tiny-*"]\nlayer = 2\n'
                    '[rome.GPT2LMHeadModel]\nlayer = 4\n'
                    '[rome."tiny-GPT2"]\nlayer = 5\n')
    get = lambda name, arch: default_hparams("rome", RomeHParams, model_name=name,
                                             architecture=arch, path=path)
    assert get("other", "Llama").layer == 1 and get("other", "Llama").v_lr == 0.1
    assert get("tiny-x", "Llama").layer == 2
    assert get("tiny-x", "GPT2LMHeadModel").layer == 4
    assert get("tiny-GPT2", "GPT2LMHeadModel").layer == 5
    assert get("tiny-GPT2", "GPT2LMHeadModel").v_lr == 0.1
    path.write_text('[memit."*"]\nlayerz = [1]\n')
    with pytest.raises(ValueError, match=r"d\.toml.*memit.*layerz"):
        default_hparams("memit", MemitHParams, model_name="m", architecture="a", path=path)


def test_every_memit_family_editor_has_a_table_wherever_memit_has_one():
    """A model with its own MEMIT window and lambda must not fall back to a family
    editor's generic "*" table (layers [0, 1], the references' lambda)."""
    from corredit.editors.hparams import read_defaults

    tables = read_defaults()
    family = [name for name in EDITORS.names()
              if issubclass(get_editor(name).hparams_class, MemitHParams) and name != "memit"]
    assert {"emmet", "alphaedit", "memit-merge", "pmet"} <= set(family)
    for name in family:
        missing = set(tables["memit"]) - set(tables.get(name, {}))
        assert not missing, f"defaults.toml: [{name}.KEY] missing for {sorted(missing)}"
    for model, arch in [("smollm2-135m", "LlamaForCausalLM"), ("gemma3-270m", "Gemma3ForCausalLM")]:
        memit = default_hparams("memit", MemitHParams, model_name=model, architecture=arch)
        for name in ("memit-merge", "alphaedit", "pmet"):
            hp = default_hparams(name, get_editor(name).hparams_class, model_name=model, architecture=arch)
            assert hp.layers == memit.layers, (name, model)
        emmet = default_hparams("emmet", get_editor("emmet").hparams_class, model_name=model, architecture=arch)
        assert emmet.layers == memit.layers[-1:] and emmet.mom2_update_weight == memit.mom2_update_weight


def test_layers_outside_the_model_are_refused(gpt2):
    h, mom = gpt2
    with pytest.raises(ValueError, match="layer 7 is outside"):
        get_editor("rome")({"layer": 7}).apply(h, REQUESTS[:1], stats=mom)


def test_closed_form_editors_need_statistics_and_find_subjects(gpt2):
    h, mom = gpt2
    with pytest.raises(ValueError, match="second-moment"):
        get_editor("rome")().apply(h, REQUESTS[:1], stats=None)
    with pytest.raises(SubjectNotFoundError, match="x9"):
        subject_position(h.tokenizer, "Nobody Here lives in", "Someone Else", case_id="x9")
    assert get_editor("rome")().snapshot_for(h) is None


# -- conformance over the registry -----------------------------------------------------

#: Editors that edit from their defaults alone; those that need a trained network first
#: (MEND) are checked with one trained in their own tests (tests/test_editors_mend.py).
UNTRAINED = [n for n in EDITORS.names() if not getattr(get_editor(n), "requires_training", False)]


def test_every_editor_that_needs_training_has_its_own_conformance_test():
    needs = {n for n in EDITORS.names() if getattr(get_editor(n), "requires_training", False)}
    assert needs == {"mend"}
    assert "check_editor" in (Path(__file__).with_name("test_editors_mend.py")
                              .read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", UNTRAINED)
def test_check_editor_gpt2(name, gpt2):
    h, mom = gpt2
    report = check_editor(name, h, REQUESTS, mom)
    assert all(a > b for a, b in zip(report["logprob_after"], report["logprob_before"]))


@pytest.mark.parametrize("name", UNTRAINED)
def test_check_editor_llama_bos_tokenizer(name, llama):
    h, mom = llama
    check_editor(name, h, REQUESTS, lambda handle, layers: {l: mom[l] for l in layers})


def test_check_editor_detects_an_undeclared_change(gpt2, monkeypatch):
    h, mom = gpt2
    cls = get_editor("ft-l")
    monkeypatch.setattr(cls, "declared_parameters",
                        lambda self, h, hp=None: [h.adapter.param_name("mlp_out", 2)])
    with pytest.raises(AssertionError, match="undeclared"):
        check_editor("ft-l", h, REQUESTS, mom)


# -- templates and keys ----------------------------------------------------------------

def test_templates_are_seeded_and_cached_per_instance(gpt2, monkeypatch):
    h, _ = gpt2
    a, b = TemplateSampler(), TemplateSampler()
    kw = dict(prompts=("The", "I"), lengths=((4, 2), (6, 1)))
    ga = a.groups(h, seed=0, **kw)
    assert ga == b.groups(h, seed=0, **kw)
    assert ga != a.groups(h, seed=1, **kw)
    assert ga[0] == ("{}",) and [len(g) for g in ga] == [1, 4, 2]
    assert all(t.endswith(". {}") and t.count("{}") == 1 for g in ga[1:] for t in g)
    import corredit.editors.templates as tm
    monkeypatch.setattr(tm, "sample_texts", lambda *a, **k: pytest.fail("resampled"))
    assert a.groups(h, seed=0, **kw) is ga


def test_key_averaging_flat_and_two_level(gpt2):
    h, _ = gpt2
    reader = KeyReader(h, REQUESTS[:2], (("{}",), ("A. {}", "B. {}", "C. {}")))
    site = Site("mlp_out", 1, "input")
    vals = reader.read([site])[site]
    assert vals.shape == (2, 4, h.key_size)
    pos = reader.positions[6]
    direct = trace(h, torch.tensor([reader.rows[6]]), read=[site]).values[site][0, pos].double()
    torch.testing.assert_close(vals[1, 2], direct, rtol=1e-5, atol=1e-6)
    flat = reader.average(vals, "flat")
    two = reader.average(vals, "two_level")
    torch.testing.assert_close(flat, vals.mean(1))
    torch.testing.assert_close(two, 0.5 * (vals[:, 0] + vals[:, 1:].mean(1)))


# -- batched value optimisation --------------------------------------------------------

def test_masked_adam_matches_torch_adam_and_freezes_inactive_rows():
    g = torch.Generator().manual_seed(0)
    p_ref = torch.zeros(1, 5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p_ref], lr=0.3)
    p = torch.zeros(3, 5, dtype=torch.float64)
    adam = MaskedAdam(p.shape, lr=0.3, dtype=torch.float64)
    active = torch.tensor([True, False, True])
    for step in range(6):
        grad = torch.randn(3, 5, generator=g, dtype=torch.float64)
        p_ref.grad = grad[:1].clone()
        opt.step()
        if step == 3:
            active[2] = False
        frozen = p[2].clone()
        adam.step(p, grad, active)
        assert torch.equal(p[1], torch.zeros(5, dtype=torch.float64))
        if step >= 3:
            assert torch.equal(p[2], frozen)
    torch.testing.assert_close(p[:1], p_ref.detach(), rtol=1e-12, atol=1e-12)
    assert adam.t.tolist() == [6, 0, 3]


@pytest.mark.parametrize("site_kind", ["mlp_out", "block"])
def test_joint_value_optimisation_equals_the_per_fact_loop(gpt2_f64, site_kind):
    h, _ = gpt2_f64
    site = Site(site_kind, 1, "output")
    templates = ("{}", "A cat. {}", "The dog and the bird. {}")
    reqs = REQUESTS + [EditRequest("4", "Marie Curie", "P1", "{} worked in", "Madrid", "Paris")]
    units = units_from_requests(reqs, templates)
    hp = RomeHParams(layer=1, v_num_grad_steps=12, v_weight_decay=0.01, v_lr=0.2)
    free = ValueOptimizer(h, [site], hp, max_batch_tokens=64).optimize(units)
    # a threshold half-way down the best fact's loss curve: it stops part-way, the
    # others (starting higher) run to the end
    best = int(free.loss.argmin())
    hp = hp.replace(v_stop_loss=float(free.nll_init[best] + free.loss[best]) / 2)
    opt = ValueOptimizer(h, [site], hp, max_batch_tokens=64)   # several chunks per step
    joint, loop = opt.optimize(units), opt.optimize_each(units)
    assert joint.stopped.any() and not joint.stopped.all(), (free.nll_init, free.loss)
    assert 0 < int(joint.steps[joint.stopped].max()) < int(joint.steps.max())
    assert torch.equal(joint.steps, loop.steps) and torch.equal(joint.stopped, loop.stopped)
    scale = loop.delta.norm(dim=-1, keepdim=True)
    assert float(((joint.delta - loop.delta).abs() / scale).max()) < 1e-9
    torch.testing.assert_close(joint.loss, loop.loss, rtol=1e-9, atol=1e-12)
    assert (joint.nll < joint.nll_init).all()
    # clamping holds per fact
    assert (joint.delta.norm(dim=-1) <= hp.clamp_norm_factor * joint.v0.norm(dim=-1) * (1 + 1e-9)).all()


# -- closed-form identities ------------------------------------------------------------

def _weight(h, layer):
    return h.adapter.read_mlp_out_weight(h.model, layer).double()


@pytest.mark.parametrize("target,mismatch", [("bare", False), ("template_mean", False),
                                             ("bare", True)])
def test_rome_writes_v_star_at_k_star(gpt2_f64, target, mismatch):
    h, mom = gpt2_f64
    ed = get_editor("rome")({"layer": 1, "rome_target": target, "original_key_mismatch": mismatch})
    req = REQUESTS[0]
    w0 = _weight(h, 1)
    res = ed.apply(h, [req], stats=mom, seed=3)
    try:
        d = res.diagnostics
        templates = d["templates"]
        site = Site("mlp_out", 1, "input")
        reader = KeyReader(h, [req], (tuple(templates),))
        keys = reader.read([site])[site][0]
        k_bare, k_avg = keys[0], keys.mean(0)
        k_star = k_bare if mismatch else k_avg
        torch.testing.assert_close(d["keys"][0], k_star, rtol=1e-10, atol=1e-10)
        w1 = _weight(h, 1)
        v_star = d["targets"][0]
        torch.testing.assert_close(w1 @ k_star, v_star, rtol=1e-9, atol=1e-9)
        v_from = k_avg if target == "template_mean" else k_bare     # v* = W v_from + delta
        torch.testing.assert_close(v_star - w0 @ v_from, d["value_delta"][0], rtol=1e-9, atol=1e-9)
        assert abs(float(d["value_delta"][0].norm()) - d["delta_norm"][0]) < 1e-9
        torch.testing.assert_close(d["bare_keys"][0], k_bare, rtol=1e-10, atol=1e-10)
        if mismatch:   # the averaged key does not get v*
            assert float((w1 @ k_avg - (w0 @ k_avg + (v_star - w0 @ k_star))).norm()) > 1e-3
        # rank one, along C^-1 k_avg
        dw = w1 - w0
        s = torch.linalg.svdvals(dw)
        assert float(s[1] / s[0]) < 1e-9
        u = torch.linalg.solve(mom[1].matrix(), k_avg)
        cos = torch.nn.functional.cosine_similarity(torch.linalg.svd(dw).Vh[0], u, dim=0)
        assert abs(abs(float(cos)) - 1) < 1e-9
    finally:
        ed.restore(h)


def test_memit_update_solves_its_normal_equations(gpt2_f64):
    h, mom = gpt2_f64
    lam = 10.0
    ed = get_editor("memit")({"layers": [0, 1], "mom2_update_weight": lam})
    res = ed.apply(h, REQUESTS, stats=mom, seed=0)
    try:
        for upd in res.diagnostics["layer_updates"]:
            layer = upd["layer"]
            name = h.adapter.param_name("mlp_out", layer)
            dw = res.deltas[name].double()
            if h.adapter.mlp_out_transposed:
                dw = dw.T
            k, r = upd["keys"].T, upd["resid"].T               # (d_k, n), (d, n)
            lhs = dw @ (lam * mom[layer].matrix() + k @ k.T)
            rhs = r @ k.T
            assert float((lhs - rhs).norm() / rhs.norm()) < 1e-6   # deltas are float32
        # the second layer's residual is recomputed after the first layer's update
        r0, r1 = (u["resid"] for u in res.diagnostics["layer_updates"])
        assert not torch.allclose(r0 / 1, r1 * 2)
        assert max(res.diagnostics["target_miss"]) < 1.0
    finally:
        ed.restore(h)


@pytest.mark.parametrize("name", ["ft-l", "ft-m"])
def test_fine_tuning_stays_in_its_linf_box(gpt2, name):
    h, _ = gpt2
    eps = 2e-4
    ed = get_editor(name)({"layer": 1, "norm_constraint": eps, "lr": 1e-3, "num_steps": 5})
    res = ed.apply(h, REQUESTS)
    try:
        name_ = h.adapter.param_name("mlp_out", 1)
        w0, w1 = res.snapshot[name_], h.model.get_parameter(name_).detach()
        assert bool(((w1 <= w0 + eps) & (w1 >= w0 - eps)).all())
        assert float(res.deltas[name_].abs().max()) > eps * (1 - 1e-3)      # the box is active
        assert res.diagnostics["steps"] == 5
    finally:
        ed.restore(h)


# -- modes -----------------------------------------------------------------------------

def test_modes_return_per_call_deltas_and_restore_bit_exact(gpt2):
    h, mom = gpt2
    name = h.adapter.param_name("mlp_out", 0)
    w0 = h.model.get_parameter(name).detach().clone()
    ed = get_editor("memit")()
    seq = ed.edit(h, REQUESTS, mode="sequential", stats=mom)
    assert all(isinstance(r, EditResult) for r in seq)
    assert [r.case_ids for r in seq] == [["1"], ["2"], ["3"]]
    total = sum(r.deltas[name] for r in seq)
    torch.testing.assert_close(h.model.get_parameter(name).detach() - w0, total, rtol=0, atol=1e-6)
    assert all(r.snapshot is seq[0].snapshot for r in seq)
    ed.restore(h)
    assert torch.equal(h.model.get_parameter(name), w0)
    sb = ed.edit(h, REQUESTS, mode="sequential-batch", batch_size=2, stats=mom)
    assert [r.case_ids for r in sb] == [["1", "2"], ["3"]]
    assert set(sb[0].diagnostics) >= {"v_loss", "delta_norm", "v0_norm", "update_norm"}
    ed.restore(h)
    assert torch.equal(h.model.get_parameter(name), w0)
    with pytest.raises(ValueError, match="batch_size"):
        ed.edit(h, REQUESTS, mode="sequential-batch", stats=mom)
    with pytest.raises(ValueError, match="unknown mode"):
        ed.edit(h, REQUESTS, mode="parallel", stats=mom)


@pytest.mark.parametrize("name", ["rome", "memit"])
def test_edit_each_equals_independent_single_edits(gpt2_f64, name):
    h, mom = gpt2_f64
    ed = get_editor(name)()
    expected = []
    for r in REQUESTS:
        res = ed.apply(h, [r], stats=mom)
        expected.append(res.deltas)
        ed.restore(h)
    lp0 = target_logprobs(h, [r.rewrite_prompt for r in REQUESTS], [r.target_new for r in REQUESTS])
    got = ed.edit_each(h, REQUESTS, lambda h_, r, res: res.deltas, stats=mom)
    for e, g in zip(expected, got):
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=1e-5, atol=1e-7)
    lp1 = target_logprobs(h, [r.rewrite_prompt for r in REQUESTS], [r.target_new for r in REQUESTS])
    assert torch.equal(lp0, lp1)      # every edit was undone


# ROME applies a batch one fact after another (each value on the model edited so far), so
# values precomputed on the unedited model match its direct edit for one fact only.
@pytest.mark.parametrize("name,idx", [("rome", [2]), ("memit", [1, 2])])
def test_precomputed_values_shared_across_batches_give_the_same_edit(gpt2_f64, name, idx):
    h, mom = gpt2_f64
    ed = get_editor(name)()
    assert ed.precomputes_values and not get_editor("ft-l")().precomputes_values
    batch = [REQUESTS[i] for i in idx]
    direct = ed.apply(h, batch, stats=mom)
    ed.restore(h)
    pre = ed.precompute_values(h, REQUESTS, stats=mom)
    assert list(pre.case_ids) == ["1", "2", "3"]
    shared = ed.apply(h, batch, stats=mom, precomputed=pre.select(idx))
    ed.restore(h)
    for k in direct.deltas:
        torch.testing.assert_close(shared.deltas[k], direct.deltas[k], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="precomputed values are for cases|single-fact"):
        ed.apply(h, REQUESTS[1:], stats=mom, precomputed=pre.select([2, 0]))
    with pytest.raises(ValueError, match="precomputed values are for cases"):
        ed.apply(h, REQUESTS[:1], stats=mom, precomputed=pre.select([2]))
