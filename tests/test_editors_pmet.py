"""PMET: conformance on every tiny architecture, its MLP update against an independent
solve of the normal equations with 1/sqrt(L - j) spreading, the adaptive loss on the
world model, and a run through ``corredit run``."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch

from corredit.editors import PmetHParams, ValueOptimizer, check_editor, get_editor, units_from_requests
from corredit.editors.pmet import ATTN, MLP
from corredit.editors.sequences import prompt_ids, subject_position
from corredit.editors.values import AdaptiveNll
from corredit.models import Site, restore, snapshot
from corredit.models.testing import TINY_ARCHITECTURES, TINY_TEXT, tiny_model
from corredit.stats import TextsCorpus, second_moments
from corredit.types import EditRequest

TEXTS = [line for line in TINY_TEXT.splitlines() if line.strip()]
REQUESTS = [
    EditRequest("1", "Danielle Darrieux", "P103", "The mother tongue of {} is", "German", "French"),
    EditRequest("2", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("3", "Eiffel Tower", "P131", "The {} is located in the city of", "Berlin", "Paris"),
]
TOKENIZERS = {"LlamaForCausalLM": "bos"}

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(arch: str, dtype=torch.float32):
    h = tiny_model(arch, seed=0, tokenizer=TOKENIZERS.get(arch, "gpt2"))
    h.model.to(dtype)
    mom = second_moments(h, range(h.n_layers), TextsCorpus(TEXTS * 20, identity="tiny-text"),
                         max_tokens=4000)
    return h, mom


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_check_editor_on_every_tiny_architecture(arch):
    h, mom = _tiny(arch)
    report = check_editor("pmet", h, REQUESTS, mom)
    assert report["changed"] == [h.adapter.param_name("mlp_out", 0)]     # no attention weight


# -- the MLP update ------------------------------------------------------------------------------

def _read_at_subject(h, texts, subjects, modules):
    """Inputs and outputs of ``modules`` at each text's subject's last token (plain hooks)."""
    seen: dict = {}
    hooks = [m.register_forward_hook(
        lambda mod, args, out, name=name: seen.__setitem__(name, (args[0].detach(), out.detach())))
        for name, m in modules.items()]
    out = {name: ([], []) for name in modules}
    try:
        with torch.no_grad():
            for text, subject in zip(texts, subjects):
                pos = subject_position(h.tokenizer, text, subject)
                h.model(torch.tensor([prompt_ids(h.tokenizer, text)]))
                for name in modules:
                    out[name][0].append(seen[name][0][0, pos].double())
                    out[name][1].append(seen[name][1][0, pos].double())
    finally:
        for hk in hooks:
            hk.remove()
    return {name: (torch.stack(i), torch.stack(o)) for name, (i, o) in out.items()}


@pytest.mark.parametrize("arch", ["GPT2LMHeadModel", "LlamaForCausalLM"])
def test_mlp_update_solves_the_normal_equations_with_sqrt_spreading(arch):
    """Per layer j (ascending, on the model edited by the layers before it): R = (Z - M) /
    sqrt(L - j) with M the last layer's MLP output at the bare prompt, K the two-level
    template-averaged keys, and dW = R K^T (lam C + K K^T)^-1."""
    h, mom = _tiny(arch, torch.float64)
    layers, lam = [0, 1, 2], 10.0
    ed = get_editor("pmet")({"layers": layers, "mom2_update_weight": lam})
    pre = ed.precompute_values(h, REQUESTS, stats=mom, seed=0)
    assert pre.delta.shape == (3, 2, h.hidden_size)
    z = (pre.v0[:, MLP] + pre.delta[:, MLP]).double()
    groups = ed._groups(h, ed.hparams_for(h), 0)
    assert [len(g) for g in groups] == [1, 5] and groups[0] == ("{}",)
    adapter, model = h.adapter, h.model
    saved = snapshot(model, [adapter.param_name("mlp_out", l) for l in layers])
    last = adapter.module(model, "mlp_out", layers[-1])
    expected = {}
    try:
        for j, layer in enumerate(layers):
            mods = {"k": adapter.module(model, "mlp_out", layer), "m": last}
            per_template = []
            for t in (g for grp in groups for g in grp):
                texts = [t.replace("{}", r.rewrite_prompt, 1) for r in REQUESTS]
                per_template.append(_read_at_subject(h, texts, [r.subject for r in REQUESTS], mods))
            keys = 0.5 * (per_template[0]["k"][0] + torch.stack([p["k"][0] for p in per_template[1:]]).mean(0))
            m_now = per_template[0]["m"][1]
            if j == 0:     # unedited: the residual is the optimised MLP vector itself
                torch.testing.assert_close(m_now, pre.v0[:, MLP].double(), rtol=1e-10, atol=1e-12)
            r = (z - m_now) / math.sqrt(len(layers) - j)                       # (n, d)
            a = lam * mom[layer].matrix().double() + keys.T @ keys
            expected[layer] = torch.linalg.solve(a, keys.T @ r).T               # R K^T A^-1 (A symmetric)
            adapter.add_to_mlp_out_weight(model, layer, expected[layer])
    finally:
        restore(model, saved)
    res = ed.apply(h, REQUESTS, stats=mom, seed=0, precomputed=pre)
    try:
        for layer in layers:
            dw = res.deltas[adapter.param_name("mlp_out", layer)].double()
            dw = dw.T if adapter.mlp_out_transposed else dw
            err = float((dw - expected[layer]).norm() / expected[layer].norm())
            assert err < 1e-5, (layer, err)                                     # deltas are float32
        upd = res.diagnostics["layer_updates"]
        torch.testing.assert_close(upd[0]["resid"], pre.delta[:, MLP].double() / math.sqrt(3))
        assert max(res.diagnostics["target_miss"]) < 1.0
        attn = res.diagnostics["attn_delta_norm"]
        assert all(x > 0 for x in attn) and res.diagnostics["delta_norm"] != attn
        assert set(res.deltas) == {adapter.param_name("mlp_out", l) for l in layers}
    finally:
        ed.restore(h)


# -- the adaptive loss ---------------------------------------------------------------------------

HP = PmetHParams(layers=(0,), v_lr=5.0, kl_factor=1.0, v_weight_decay=0.5, clamp_norm_factor=2.0,
                 v_num_grad_steps=30, v_stop_loss=0.0, context_templates=())


@pytest.fixture(scope="module")
def world():
    world_mod = pytest.importorskip("corredit.world")
    try:
        world_mod.default_world_dir(build=False)
    except FileNotFoundError as exc:
        pytest.skip(f"no built world: {exc}")
    from corredit.models import load

    h = load("world", device="cpu")
    h.model.double()
    reqs = world_mod.load_world().requests(n=6, seed=0)
    return h, units_from_requests(reqs, ["{}"], kl_prompt=HP.kl_prompt)


def _opt(h, units, *, steps=HP.v_num_grad_steps, adaptive=None, incremental=True):
    sites = [Site("attn_out", 0, "output"), Site("mlp_out", 0, "output")]
    return ValueOptimizer(h, sites, HP.replace(v_num_grad_steps=steps), adaptive=adaptive,
                          incremental=incremental).optimize(units)


@pytest.fixture(scope="module")
def first_top(world):
    """The joint run that stops every fact at its first evaluation on top (no KL bar), and
    one fact ``i`` that gets there after ``t >= 1`` steps."""
    h, units = world
    run = _opt(h, units, adaptive=AdaptiveNll(kl_stop=math.inf))
    i = next(i for i in range(len(units)) if run.stopped[i] and run.steps[i] >= 1)
    return run, i, int(run.steps[i])


def test_adaptive_loss_stops_once_the_target_is_on_top_and_kl_is_small(world, first_top):
    h, units = world
    run, i, t = first_top
    assert 2 <= int(run.stopped.sum()) < len(units)     # some flip within the budget, some do not
    assert torch.equal(run.stopped, run.top)
    # up to the first step on top the NLL weight is 1: the plain loop's path, stopped there
    before, at = (_opt(h, [units[i]], steps=s) for s in (t, t + 1))
    assert not before.top[0] and at.top[0]
    torch.testing.assert_close(run.delta[i], at.delta[0], rtol=1e-9, atol=1e-12)
    # the KL rule: kl_factor x KL at that evaluation against the bar
    kl_t = HP.kl_factor * float(at.kl[0])
    assert kl_t > 0
    same = _opt(h, [units[i]], adaptive=AdaptiveNll(kl_stop=kl_t))
    assert same.stopped[0] and int(same.steps[0]) == t
    below = _opt(h, [units[i]], adaptive=AdaptiveNll(kl_stop=kl_t / 2))
    assert int(below.steps[0]) > t
    assert not below.stopped[0] or (below.top[0] and HP.kl_factor * below.kl[0] <= kl_t / 2)
    # the reference bar 0.01: whatever stops is on top with a small KL term
    ref = _opt(h, units, adaptive=AdaptiveNll())
    assert (~ref.stopped | (ref.top & (HP.kl_factor * ref.kl <= 0.01))).all()


def test_adaptive_loss_drops_the_nll_weight_after_the_target_tops(world, first_top):
    h, units = world
    _, i, t = first_top
    never = AdaptiveNll(kl_stop=-1.0)                 # the NLL weight changes, nothing stops
    run = _opt(h, units[:4], steps=12, adaptive=never)
    prev = _opt(h, units[:4], steps=11, adaptive=never)          # one evaluation before
    assert not run.stopped.any() and prev.top.any() and not prev.top.all()
    torch.testing.assert_close(run.nll_weight, torch.where(prev.top, 0.1, 1.0).double())
    decay = HP.v_weight_decay * (run.delta.norm(dim=-1) / run.v0.norm(dim=-1).pow(2)).sum(-1)
    torch.testing.assert_close(run.loss, run.nll_weight * run.nll + HP.kl_factor * run.kl + decay,
                               rtol=1e-9, atol=1e-12)
    # with top_factor 1 the adaptive loss is the plain one, step for step
    same = _opt(h, units[:4], steps=12, adaptive=AdaptiveNll(top_factor=1.0, kl_stop=-1.0))
    plain = _opt(h, units[:4], steps=12)
    assert torch.equal(same.delta, plain.delta) and torch.equal(same.loss, plain.loss)
    # on top at evaluation t: the evaluation after reads the NLL at weight 0.1, the step
    # after that is the first one taken with it (the reference sets the weight after
    # backpropagating the loss it just evaluated)
    a, b = (_opt(h, [units[i]], steps=t + 2, adaptive=x) for x in (never, None))
    assert torch.equal(a.delta, b.delta) and a.nll_weight[0] == pytest.approx(0.1)
    assert a.loss[0] < b.loss[0]
    a, b = (_opt(h, [units[i]], steps=t + 3, adaptive=x) for x in (never, None))
    assert not torch.allclose(a.delta, b.delta, rtol=1e-6, atol=0.0)


def test_adaptive_loss_is_the_same_with_full_recomputation(world):
    h, units = world
    rule = AdaptiveNll(kl_stop=0.05)
    a = _opt(h, units[:4], adaptive=rule, incremental=False)
    b = _opt(h, units[:4], adaptive=rule)
    assert torch.equal(a.steps, b.steps) and torch.equal(a.stopped, b.stopped)
    assert torch.equal(a.top, b.top) and torch.equal(a.nll_weight, b.nll_weight)
    torch.testing.assert_close(a.delta, b.delta, rtol=1e-9, atol=1e-10)


# -- runs ------------------------------------------------------------------------------------------

def test_pmet_runs_through_corredit_run_in_every_mode(tmp_path, capsys):
    import pandas as pd

    from corredit.cli import main
    from tests.test_runner import make_fixture, run_header

    fx = make_fixture(tmp_path / "world")
    run = tmp_path / "run.toml"
    run.write_text(run_header(fx, "pmet") + textwrap.dedent(f"""\

        [schedule]
        schedulers = ["random"]
        batch_sizes = [3]

        [[editors]]
        name = "pmet"
        mode = "batch"
        hparams = {{ layers = [0, 1], v_num_grad_steps = 4 }}

        [[editors]]
        name = "pmet"
        label = "pmet-seq"
        mode = "sequential"
        hparams = {{ layers = [0, 1], v_num_grad_steps = 4 }}

        [[editors]]
        name = "pmet"
        label = "pmet-seqb"
        mode = "sequential-batch"
        hparams = {{ layers = [0, 1], v_num_grad_steps = 4 }}
        """), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(run), "--out", str(out), "--no-progress"]) == 0
    assert "| pmet |" in capsys.readouterr().out.replace("  ", " ")
    df = pd.read_parquet(out / "results.parquet")
    assert set(df["editor"]) == {"pmet", "pmet-seq", "pmet-seqb"}
    assert set(df.groupby("editor")["mode"].first()) == {"batch", "sequential", "sequential-batch"}
    diag = df[df["suite"] == "diagnostics"]
    assert {"attn_delta_norm", "delta_norm", "v_top", "v_nll_weight"} <= set(diag["metric"])
    assert diag[diag["metric"] == "update_norm"]["prompt_kind"].str.contains("mlp").all()
    # one edit per step in sequence; every step of every mode wrote its update
    steps = diag[diag["metric"] == "delta_norm"].groupby("editor")["step"].nunique()
    n = df.loc[(df["editor"] == "pmet-seq") & (df["suite"] == "probability"), "case_id"].nunique()
    assert n > 3 and steps["pmet-seq"] == n and steps["pmet-seqb"] == steps["pmet"] == -(-n // 3)
