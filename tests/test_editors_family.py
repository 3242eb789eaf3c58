"""The locate-then-edit family on MEMIT's loop: EMMET, AlphaEdit and MEMIT-Merge, their
identities on tiny float64 models, conformance on the tiny architectures and runs."""

from __future__ import annotations

import textwrap

import pytest
import torch

from corredit.editors import check_editor, get_editor
from corredit.editors.alphaedit import alphaedit_update, nullspace_projector
from corredit.editors.emmet import emmet_update
from corredit.editors.keys import KeyReader
from corredit.editors.memit_merge import merge_groups, merged_units
from corredit.models import Site
from corredit.models.testing import TINY_ARCHITECTURES, TINY_TEXT, tiny_model
from corredit.stats import TextsCorpus, second_moments
from corredit.types import EditRequest

TEXTS = [line for line in TINY_TEXT.splitlines() if line.strip()]
REQUESTS = [
    EditRequest("1", "Danielle Darrieux", "P103", "The mother tongue of {} is", "German", "French"),
    EditRequest("2", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("3", "Eiffel Tower", "P131", "The {} is located in the city of", "Berlin", "Paris"),
]
SAME_SUBJECT = [
    EditRequest("a", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("b", "Toko Yasuda", "P27", "{} is a citizen of", "Japan", "France"),
    EditRequest("c", "Eiffel Tower", "P131", "{} is located in", "Paris", "Rome"),
]
NEW = ("alphaedit", "emmet", "memit-merge")
ARCHS = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "bos"}

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(arch: str, dtype=torch.float64):
    h = tiny_model(arch, seed=0, tokenizer=ARCHS.get(arch, "gpt2"))
    h.model.to(dtype)
    mom = second_moments(h, range(h.n_layers), TextsCorpus(TEXTS * 20, identity="tiny-text"),
                         max_tokens=4000)
    return h, mom


@pytest.fixture(scope="module", params=sorted(ARCHS))
def tiny(request):
    return _tiny(request.param)


def _dw(h, res, layer):
    d = res.deltas[h.adapter.param_name("mlp_out", layer)].double()
    return d.T if h.adapter.mlp_out_transposed else d


def _weight(h, layer):
    return h.adapter.read_mlp_out_weight(h.model, layer).double()


# -- EMMET -------------------------------------------------------------------------------------

def test_emmet_at_one_fact_is_rome_with_the_same_key_and_value(tiny):
    """One layer, ROME's templates and flat key averaging, the same optimised vector: EMMET's
    update is ROME's ``rome_target="template_mean"`` update (k* = k_avg, v* = W k_avg + delta)."""
    h, mom = tiny
    common = {"context_prompts": [""], "context_templates": [[5, 2]], "v_weight_decay": 0.01}
    em = get_editor("emmet")({"layers": [1], "key_averaging": "flat", **common})
    ro = get_editor("rome")({"layer": 1, "rome_target": "template_mean", **common})
    pre = em.precompute_values(h, REQUESTS[:1], stats=mom, seed=0)
    a = em.apply(h, REQUESTS[:1], stats=mom, seed=0, precomputed=pre)
    em.restore(h)
    b = ro.apply(h, REQUESTS[:1], stats=mom, seed=0, precomputed=pre)
    ro.restore(h)
    torch.testing.assert_close(a.diagnostics["layer_updates"][0]["keys"][0], b.diagnostics["keys"][0],
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_dw(h, a, 1), _dw(h, b, 1), rtol=1e-6, atol=1e-9)
    assert a.diagnostics["layer_updates"][0]["emmet_eps"] == 0.0


@pytest.mark.parametrize("layers", [[0], [0, 1]])
def test_emmet_meets_its_constraints(tiny, layers):
    h, mom = tiny
    ed = get_editor("emmet")({"layers": layers, "emmet_lambda": 0.0})
    res = ed.apply(h, REQUESTS, stats=mom, seed=0)
    try:
        for upd in res.diagnostics["layer_updates"]:     # (W + dW) K_E = W K_E + R per layer
            got = _dw(h, res, upd["layer"]) @ upd["keys"].T
            want = upd["change"].T
            assert float((got - want).norm() / want.norm()) < 1e-5      # deltas are float32
            assert upd["pseudo_inverse"] is False
    finally:
        ed.restore(h)


def test_emmet_regularises_batches_and_falls_back_to_the_pseudo_inverse():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    cov = a @ a.T + torch.eye(6, dtype=torch.float64)
    k = torch.randn(6, 1, generator=g, dtype=torch.float64).repeat(1, 2)     # coinciding keys
    r = torch.randn(4, 2, generator=g, dtype=torch.float64)
    d_w, pinv = emmet_update(r, k, cov)
    assert pinv and torch.isfinite(d_w).all()
    torch.testing.assert_close(d_w @ k[:, :1], r.mean(1, keepdim=True))     # the mean value
    d_w, pinv = emmet_update(r, k, cov, eps=0.1)
    assert not pinv


# -- AlphaEdit ---------------------------------------------------------------------------------

def test_alphaedit_leaves_protected_keys_alone_and_accumulates_c_hat(tiny):
    h, mom = tiny
    layer, alpha = 0, 0.01
    ed = get_editor("alphaedit")({"layers": [layer], "nullspace_energy": 0.2, "l2_weight": alpha})
    first = ed.apply(h, REQUESTS[:2], stats=mom, seed=0)
    try:
        st = ed.state_for(h)[layer]
        proj = st["projector"]
        assert 0 < st["nullspace_dim"] < h.key_size
        torch.testing.assert_close(proj, nullspace_projector(mom[layer].matrix(), energy=0.2))
        protected = (torch.eye(h.key_size, dtype=torch.float64) - proj) @ torch.randn(
            h.key_size, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        dw = _dw(h, first, layer)
        ratio = (dw @ protected).norm(dim=0) / (dw.norm() * protected.norm(dim=0))
        assert float(ratio.max()) < 1e-6
        # C_hat = K K^T of the batch's keys read on the edited model
        groups = ed._groups(h, ed.hparams_for(h), 0)
        site = Site("mlp_out", layer, "input")

        def keys(reqs):
            reader = KeyReader(h, reqs, groups)
            return reader.average(reader.read([site])[site], "two_level")

        k1 = keys(REQUESTS[:2])
        torch.testing.assert_close(st["c_hat"], k1.T @ k1, rtol=1e-10, atol=1e-12)
        c_hat1 = st["c_hat"].clone()
        second = ed.apply(h, REQUESTS[2:], stats=mom, seed=0)      # solved with C_hat of batch 1
        upd = second.diagnostics["layer_updates"][0]
        want = alphaedit_update(upd["change"].T, upd["keys"].T, proj, c_hat1, alpha)
        torch.testing.assert_close(_dw(h, second, layer), want, rtol=1e-5, atol=1e-7)
        k2 = keys(REQUESTS[2:])
        torch.testing.assert_close(ed.state_for(h)[layer]["c_hat"], c_hat1 + k2.T @ k2,
                                   rtol=1e-10, atol=1e-12)
        assert ed.state_for(h)[layer]["batches"] == 2
    finally:
        ed.restore(h)
    assert ed.state_for(h) == {}


def test_alphaedit_absolute_threshold_is_the_reference_rule():
    cov = torch.diag(torch.tensor([1e-3, 1e-2, 0.5, 2.0], dtype=torch.float64))
    p = nullspace_projector(cov, rule="absolute", threshold=2e-2)
    torch.testing.assert_close(p, torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)))
    p = nullspace_projector(cov, energy=0.01)             # 0.011 / 2.511 < 1%
    assert float(torch.trace(p)) == pytest.approx(2.0)


# -- MEMIT-Merge --------------------------------------------------------------------------------

def test_merge_groups_by_prefix_and_by_key(tiny):
    h, _ = tiny
    assert merge_groups(SAME_SUBJECT) == [[0, 1], [2]]
    assert merge_groups(REQUESTS) == [[0], [1], [2]]
    ed = get_editor("memit-merge")({"merge_rule": "key"})
    hp = ed.hparams_for(h)
    assert ed.groups_for(h, SAME_SUBJECT, hp, 0) == [[0, 1], [2]]
    units = merged_units(SAME_SUBJECT, [[0, 1], [2]], ("{}", "Hi. {}"))
    assert units[0].case_id == "a+b" and units[0].kl_prompts == ("Toko Yasuda is a",)
    assert units[0].rewrites == (("Toko Yasuda plays the", "tennis"),
                                 ("Hi. Toko Yasuda plays the", "tennis"),
                                 ("Toko Yasuda is a citizen of", "Japan"),
                                 ("Hi. Toko Yasuda is a citizen of", "Japan"))


def test_memit_merge_is_memit_on_distinct_subjects(tiny):
    h, mom = tiny
    hp = {"layers": [0, 1], "mom2_update_weight": 10.0}
    out = []
    for name in ("memit", "memit-merge"):
        ed = get_editor(name)(hp)
        out.append(ed.apply(h, REQUESTS, stats=mom, seed=0))
        ed.restore(h)
    for n, d in out[0].deltas.items():
        assert torch.equal(d, out[1].deltas[n])
    assert out[1].diagnostics["merge_groups"] == [[0], [1], [2]]


def test_memit_merge_writes_one_column_per_subject(tiny):
    h, mom = tiny
    ed = get_editor("memit-merge")()
    res = ed.apply(h, SAME_SUBJECT, stats=mom, seed=0)
    ed.restore(h)
    d = res.diagnostics
    assert d["merge_groups"] == [[0, 1], [2]] and d["case_id"] == ["a+b", "c"]
    assert d["layer_updates"][0]["keys"].shape[0] == 2
    assert res.case_ids == ["a", "b", "c"]


# -- conformance and modes ----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in TINY_ARCHITECTURES if a not in ARCHS])
def test_check_editor_other_tiny_architectures(arch):
    h, mom = _tiny(arch, torch.float32)
    for name in NEW:
        check_editor(name, h, REQUESTS, mom)


@pytest.mark.parametrize("name", NEW)
def test_modes_and_restore(name):
    h, mom = _tiny("GPT2LMHeadModel", torch.float32)
    state0 = {n: p.detach().clone() for n, p in h.model.named_parameters()}
    ed = get_editor(name)()
    for mode, size in (("batch", None), ("sequential", None), ("sequential-batch", 2)):
        results = ed.edit(h, SAME_SUBJECT, mode=mode, batch_size=size, stats=mom, seed=0)
        assert len(results) == {"batch": 1, "sequential": 3, "sequential-batch": 2}[mode]
        ed.restore(h)
        assert all(torch.equal(p, state0[n]) for n, p in h.model.named_parameters())


def test_family_runs_through_the_runner_in_every_mode(tmp_path):
    """One run over the runner's tiny world: EMMET in batches, MEMIT-Merge one fact at a
    time, AlphaEdit in sequential batches."""
    import pandas as pd

    from corredit.config import load_config
    from corredit.models import load
    from corredit.runner import Runner
    from tests.test_runner import make_fixture, run_header

    fx = make_fixture(tmp_path / "world")
    tiny = "context_templates = [[5, 1]], v_weight_decay = 0.01, v_num_grad_steps = 4"
    run = tmp_path / "run.toml"
    run.write_text(run_header(fx, "family") + textwrap.dedent(f"""\

        [schedule]
        schedulers = ["same_subject_together"]
        batch_sizes = [3]

        [[editors]]
        name = "emmet"
        mode = "batch"
        hparams = {{ layers = [0], {tiny} }}

        [[editors]]
        name = "memit-merge"
        mode = "sequential"
        hparams = {{ layers = [0], {tiny} }}

        [[editors]]
        name = "alphaedit"
        mode = "sequential-batch"
        hparams = {{ layers = [0], nullspace_energy = 0.2, l2_weight = 0.01, {tiny} }}
        """), encoding="utf-8")
    cfg = load_config(run)
    folder = Runner(cfg, tmp_path / "out", handle=load(fx["model"])).run()
    df = pd.read_parquet(folder.root / "results.parquet")
    assert {t.name for t in cfg.trials()} == set(df["trial"])
    assert {"emmet", "memit-merge", "alphaedit"} <= set(df["editor"])


@pytest.mark.parametrize("mode, carried", [("batch", False), ("sequential-batch", True)])
def test_alphaedit_state_is_reset_between_batches_of_a_batch_mode_trial(tmp_path, monkeypatch,
                                                                         mode, carried):
    """In batch mode every batch edits the unedited model, so AlphaEdit's accumulated keys
    (C_hat) from an earlier batch must not constrain a later one; in sequential batches
    they must."""
    from corredit.config import load_config
    from corredit.editors.alphaedit import AlphaEdit
    from corredit.models import load
    from corredit.runner import Runner
    from tests.test_runner import make_fixture, run_header

    seen: list[float] = []
    solve = AlphaEdit._solve

    def spy(self, h, hp, layer, change, keys, cov):
        st = self.state_for(h).get(layer)
        seen.append(0.0 if st is None else float(st["c_hat"].abs().sum()))
        return solve(self, h, hp, layer, change, keys, cov)

    monkeypatch.setattr(AlphaEdit, "_solve", spy)
    fx = make_fixture(tmp_path / "world")
    tiny = "context_templates = [[5, 1]], v_weight_decay = 0.01, v_num_grad_steps = 2"
    run = tmp_path / "run.toml"
    run.write_text(run_header(fx, "alpha") + textwrap.dedent(f"""\

        [schedule]
        schedulers = ["random"]
        batch_sizes = [3]

        [[editors]]
        name = "alphaedit"
        mode = "{mode}"
        hparams = {{ layers = [0], nullspace_energy = 0.2, l2_weight = 0.01, {tiny} }}
        """), encoding="utf-8")
    Runner(load_config(run), tmp_path / "out", handle=load(fx["model"])).run()
    assert len(seen) >= 2 and seen[0] == 0.0
    assert any(c > 0 for c in seen[1:]) == carried
