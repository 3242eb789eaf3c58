"""MEND: gradient factors and the edited forward pass against direct computations, the
network's pieces, seeded and resumable training, safetensors + JSON files, the world's
training split, the command, and conformance on every tiny architecture."""

from __future__ import annotations

import json

import pytest
import torch

from corredit.editors import check_editor, get_editor
from corredit.editors.mend import (
    MendConfig, MendNetwork, examples_from_requests, load_network,
    named_dir, network_config, resolve_network, sample_batch, save_network, split_examples,
    train_mend, training_hparams,
)
from corredit.editors.mend.factors import TokenRows, edit_factors, edited_logits, target_nll, token_weights
from corredit.editors.mend.io import CHECKPOINT_FILE, META_FILE, NETWORK_FILE
from corredit.editors.mend.network import RunningNorm
from corredit.models.testing import TINY_ARCHITECTURES, tiny_model
from corredit.types import EditRequest, LocalityPrompt

REQUESTS = [
    EditRequest("1", "Danielle Darrieux", "P103", "The mother tongue of {} is", "German", "French",
                paraphrase_prompts=("Danielle Darrieux speaks",),
                locality=(LocalityPrompt("The capital of France is", "Paris"),)),
    EditRequest("2", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar",
                neighborhood_prompts=("Serena Williams plays the",)),
    EditRequest("3", "Eiffel Tower", "P131", "The {} is located in the city of", "Berlin", "Paris"),
]
#: a few seconds of training on a tiny model (defaults.toml [mend-training."tiny-*"])
QUICK = {"steps": 6, "accumulate": 2, "checkpoint_every": 2}

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:mend. network.*trained on model")]


def _tiny(arch: str = "GPT2LMHeadModel", dtype=torch.float32):
    h = tiny_model(arch, seed=0, tokenizer="gpt2" if arch == "GPT2LMHeadModel" else "bos")
    h.model.to(dtype)
    return h


def _train(h, folder, *, seed=0, stop_after=None, **over):
    hp = training_hparams(h, {**QUICK, **over})
    return train_mend(h, examples_from_requests(REQUESTS), hp, folder, seed=seed,
                      progress=False, stop_after=stop_after)


def _tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / NETWORK_FILE))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    h = _tiny()
    folder = tmp_path_factory.mktemp("mend") / "net"
    res = _train(h, folder)
    return h, folder, res


# -- the passes through the model ---------------------------------------------------------------

@pytest.mark.parametrize("arch", ["GPT2LMHeadModel", "LlamaForCausalLM"])
def test_factors_give_the_weight_gradient(arch):
    """sum_t delta_t x_t^T equals autograd's gradient of W_out (keys -> values layout),
    for the sum of per-edit mean NLLs and for the reference's token mean."""
    h = _tiny(arch, torch.float64)
    pairs = [(r.rewrite_prompt, r.target_new) for r in REQUESTS]
    rows = TokenRows.build(h.tokenizer, pairs)
    layers = (1, 2)
    for batch_loss in ("sum_of_means", "token_mean"):
        f = edit_factors(h, layers, rows, batch_loss=batch_loss, max_tokens=40)   # several chunks
        params = [h.model.get_parameter(h.adapter.param_name("mlp_out", layer)) for layer in layers]
        for p in params:
            p.requires_grad_(True)
        try:
            packed = rows.packed(h)
            logits = h.model(input_ids=packed.input_ids, attention_mask=packed.attention_mask).logits
            loss, _ = target_nll(logits, rows, token_weights(rows, batch_loss), compact=False)
            grads = torch.autograd.grad(loss, params)
        finally:
            for p in params:
                p.requires_grad_(False)
        assert f.loss == pytest.approx(float(loss.detach()), rel=1e-6)     # NLL in float32
        for i, g in enumerate(grads):
            want = g.T if h.adapter.mlp_out_transposed else g
            got = f.delta[i].double().T @ f.x[i].double()
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert sorted(f.per_edit) == [0, 1, 2]


def test_updated_weights_hook_is_the_weight_change():
    """Rows of a batch see their own group's update, as if W_out itself had changed."""
    h = _tiny("LlamaForCausalLM", torch.float64)
    gen = torch.Generator().manual_seed(0)
    dws = [0.3 * torch.randn(h.hidden_size, h.key_size, generator=gen, dtype=torch.float64)
           for _ in range(2)]
    rows = TokenRows.build(h.tokenizer, [(r.rewrite_prompt, r.target_new) for r in REQUESTS],
                           full=True)                             # logits at every position
    packed = rows.packed(h)
    group = torch.tensor([1, 0, 1])
    got = edited_logits(h, {2: dws}, group, rows)
    for r in range(3):
        h.adapter.add_to_mlp_out_weight(h.model, 2, dws[int(group[r])])
        try:
            with torch.no_grad():
                want = h.model(input_ids=packed.input_ids[r:r + 1],
                               attention_mask=packed.attention_mask[r:r + 1]).logits[0]
        finally:
            h.adapter.add_to_mlp_out_weight(h.model, 2, -dws[int(group[r])])
        n = int(packed.lengths[r])
        torch.testing.assert_close(got[r, :n].detach(), want[:n], rtol=1e-6, atol=1e-8)


# -- the network ---------------------------------------------------------------------------------

def test_running_norm_matches_the_sample_statistics():
    gen = torch.Generator().manual_seed(0)
    norm = RunningNorm(5)
    parts = [torch.randn(n, 5, generator=gen) * 3 + 1 for n in (1, 7, 4)]
    for p in parts:
        norm.update(p)
    allrows = torch.cat(parts).double()
    torch.testing.assert_close(norm.mean, allrows.mean(0))
    std = (norm.m2 / (norm.count - 1)).sqrt()
    torch.testing.assert_close(std, allrows.std(0))
    x = torch.randn(3, 5, generator=gen)
    torch.testing.assert_close(norm(x), ((x - allrows.mean(0)) / (allrows.std(0) + 1e-7)).float())


def test_untrained_network_is_a_normalised_gradient_step():
    """U starts at zero: the transform is the identity on standardised factors, and the
    update is -edit_lr * sum_t norm(delta_t) norm(x_t)^T; modes differ only once trained."""
    cfg = MendConfig(layers=(0, 2), key_size=6, hidden_size=4, rank=3, edit_lr=0.01)
    net = MendNetwork(cfg, seed=0)
    gen = torch.Generator().manual_seed(1)
    x, d = torch.randn(9, 6, generator=gen), torch.randn(9, 4, generator=gen)
    net.update_statistics(1, x, d)
    t = net.transforms[0]
    want = -0.01 * t.delta_norm(d).T @ t.x_norm(x)
    torch.testing.assert_close(net.update(1, x, d), want)
    torch.testing.assert_close(net.update(0, x, d), want)
    assert net.transforms[0].layers[0].u.shape == (10, 3)            # rank capped by width
    assert MendNetwork(cfg, seed=0).state_dict().keys() == net.state_dict().keys()
    assert torch.equal(MendNetwork(cfg, seed=5).transforms[0].layers[0].v,
                       MendNetwork(cfg, seed=5).transforms[0].layers[0].v)


def test_training_examples_and_draws():
    ex = examples_from_requests(REQUESTS, exclude_subjects={"Eiffel Tower"})
    assert [e.case_id for e in ex] == ["1", "2"]
    assert ex[0].loc == (("The capital of France is", "Paris"),)
    assert ex[1].loc == (("Serena Williams plays the", "guitar"),)       # true target
    b = sample_batch(ex, seed=0, step=3, micro=1, edits=2, paraphrases=1)
    assert b == sample_batch(ex, seed=0, step=3, micro=1, edits=2, paraphrases=1)
    assert sorted(b.case_ids) == ["1", "2"]
    k = b.case_ids.index("1")
    assert [p for (p, _), o in zip(b.outer, b.outer_owner) if o == k] == \
        ["The mother tongue of Danielle Darrieux is", "Danielle Darrieux speaks"]
    with pytest.raises(ValueError, match="no training edits"):
        examples_from_requests(REQUESTS[:1], exclude_subjects={"Danielle Darrieux"})
    train, val = split_examples(examples_from_requests(REQUESTS), 1, seed=0)
    assert len(train) == 2 and len(val) == 1
    assert not {e.case_id for e in train} & {e.case_id for e in val}


# -- training: seeded, resumable, saved ---------------------------------------------------------

def test_training_is_seeded(trained, tmp_path):
    h, folder, res = trained
    assert res.finished and res.steps_done == QUICK["steps"] and len(res.history) == QUICK["steps"]
    again = _train(h, tmp_path / "again")
    other = _train(h, tmp_path / "other", seed=1)
    a, b, c = _tensors(folder), _tensors(again.folder), _tensors(other.folder)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert res.history[-1]["edit"] != res.history[0]["edit"]


def test_training_resumes_to_the_same_network(trained, tmp_path):
    """Stopped after 3 of 6 steps (a checkpoint, no network yet), then the same call again:
    the network equals the uninterrupted one bit for bit."""
    h, folder, _ = trained
    part = _train(h, tmp_path / "resumed", stop_after=3)
    assert not part.finished and part.steps_done == 3
    assert (tmp_path / "resumed" / CHECKPOINT_FILE).is_file()
    assert not (tmp_path / "resumed" / META_FILE).exists()
    done = _train(h, tmp_path / "resumed")
    assert done.finished and [r["step"] for r in done.history] == list(range(1, 7))
    a, b = _tensors(folder), _tensors(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings"):
        _train(h, tmp_path / "resumed", lr=0.5)


def test_saved_network_loads_by_path_and_by_name(trained, tmp_path, monkeypatch):
    h, folder, _ = trained
    net, doc = load_network(folder)
    assert doc["format"] == "corredit-mend" and doc["model"] == h.name
    assert doc["network"]["layers"] == [0, 1, 2] and doc["training"]["steps"] == QUICK["steps"]
    assert net.config == network_config(h, training_hparams(h, QUICK))
    assert load_network(folder / META_FILE)[0].config == net.config
    monkeypatch.setenv("CORREDIT_CACHE", str(tmp_path / "cache"))
    save_network(net, named_dir("tiny"), meta={"model": h.name})
    assert resolve_network("tiny") == tmp_path / "cache" / "mend" / "tiny"
    a, b = net.state_dict(), load_network("tiny")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileNotFoundError, match="train-editor mend"):
        resolve_network("absent")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / META_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a MEND network"):
        load_network(tmp_path / "bad")


def test_editor_refuses_a_missing_or_mismatched_network(tmp_path):
    h = _tiny()
    with pytest.raises(ValueError, match="no trained network"):
        get_editor("mend")().apply(h, REQUESTS)
    wide = MendNetwork(MendConfig(layers=(0,), key_size=65, hidden_size=32, rank=4), seed=0)
    save_network(wide, tmp_path / "wide")
    with pytest.raises(ValueError, match="d_k=65"):
        get_editor("mend")({"network": str(tmp_path / "wide")}).apply(h, REQUESTS)


def test_edit_is_one_transformed_gradient_step(trained):
    """The editor's change of each W_out is the network's update of the batch's factors."""
    h, folder, _ = trained
    ed = get_editor("mend")({"network": str(folder), "lr_scale": 0.5})
    net = ed.network_for(h)
    rows = TokenRows.build(h.tokenizer, [(r.rewrite_prompt, r.target_new) for r in REQUESTS])
    f = edit_factors(h, net.config.layers, rows)
    res = ed.apply(h, REQUESTS)
    ed.restore(h)
    with torch.no_grad():
        for i, layer in enumerate(net.config.layers):
            d = res.deltas[h.adapter.param_name("mlp_out", layer)]
            d = d.T if h.adapter.mlp_out_transposed else d
            torch.testing.assert_close(d, 0.5 * net.update(i, f.x[i], f.delta[i]), rtol=1e-5, atol=1e-7)
    assert res.diagnostics["inner_nll"] == pytest.approx([f.per_edit[i] for i in range(3)])


# -- conformance ---------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_check_editor_every_tiny_architecture(arch, tmp_path):
    h = _tiny(arch)
    res = _train(h, tmp_path / "net")
    report = check_editor("mend", h, REQUESTS, None, hparams={"network": str(res.folder)})
    assert all(a > b for a, b in zip(report["logprob_after"], report["logprob_before"]))
    for mode in ("sequential", "sequential-batch"):
        ed = get_editor("mend")({"network": str(res.folder)})
        assert len(ed.edit(h, REQUESTS, mode=mode, batch_size=2)) == (3 if mode == "sequential" else 2)
        ed.restore(h)


# -- the world's training split and the command ------------------------------------------------

def test_world_training_split_is_disjoint_from_the_demo():
    world = pytest.importorskip("corredit.world")
    try:
        world.default_world_dir(build=False)
    except FileNotFoundError as exc:
        pytest.skip(f"no built world: {exc}")
    import dataclasses

    from corredit.data.selection import select_requests
    from corredit.demo import demo_config
    from corredit.train_commands import demo_subjects, world_training_edits

    reqs, excluded = world_training_edits(seed=0)
    w = world.load_world()
    demo_ids, demo_subj = set(), set()
    for quick in (False, True):
        data = demo_config(quick).data
        for d in (data, dataclasses.replace(data, max_edits=64)):
            sel = select_requests(w.requests(relations=list(d.relations),
                                             subject_first=d.subject_first, seed=d.seed), d)
            demo_ids |= {r.case_id for r in sel}
            demo_subj |= {r.subject for r in sel}
    assert excluded == demo_subj == demo_subjects() and len(demo_subj) >= 80
    assert len(reqs) > 1000
    assert not {r.case_id for r in reqs} & demo_ids
    assert not {r.subject for r in reqs} & demo_subj
    ex = examples_from_requests(reqs, exclude_subjects=excluded)
    texts = [t for e in ex for t in (e.prompt, *e.paraphrases, *(p for p, _ in e.loc))]
    assert not [t for t in texts if any(s in t for s in demo_subj)]


def test_train_editor_command(tmp_path, capsys):
    from corredit.cli import main
    from tests.test_runner import make_fixture

    fx = make_fixture(tmp_path / "fx")
    out = tmp_path / "net"
    argv = ["train-editor", "mend", "--model", str(fx["model"]), "--data", str(fx["edits"]),
            "--out", str(out), "--set", "steps=3", "--set", "accumulate=2", "--no-progress",
            "--threads", "1"]
    assert main(argv + ["--stop-after", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps_done"] == 2 and not first["finished"]
    assert main(argv) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["finished"] and done["steps_done"] == 3
    doc = json.loads((out / META_FILE).read_text())
    assert doc["training"]["steps"] == 3 and doc["data"]["source"] == str(fx["edits"])
    assert main(["train-editor", "mend", "--model", str(fx["model"]), "--data", str(fx["edits"]),
                 "--out", str(out), "--set", "nonsense=1"]) == 2
    known = tmp_path / "known"            # known facts (top-k over more tokens than the vocabulary)
    assert main(["train-editor", "mend", "--model", str(fx["model"]), "--data", str(fx["edits"]),
                 "--out", str(known), "--set", "steps=1", "--known", "top_k", "--known-k", "1000",
                 "--max-edits", "5", "--no-progress"]) == 0
    capsys.readouterr()
    data = json.loads((known / META_FILE).read_text())["data"]
    assert data["known"] == "top_k" and data["n_train"] + data["n_val"] == 5
