"""Memory-based editors (GRACE, T-Patcher) and the protocol for editors that add hooks,
modules or memory: attachments, restore, codebook and patch rules, modes, runs."""

from __future__ import annotations

import textwrap

import pytest
import torch

from corredit.editors import EDITORS, MODES, Attachments, check_editor, get_editor
from corredit.editors.checks import hook_counts, module_tree
from corredit.editors.grace import GRACE, Codebook
from corredit.editors.sequences import pack, prompt_ids, target_ids, target_logprobs
from corredit.editors.tpatcher import Patches, TPatcherHParams
from corredit.models import Site, trace
from corredit.models.testing import TINY_ARCHITECTURES, tiny_model
from corredit.types import EditRequest

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

NAMES = ("grace", "t-patcher")
FAST = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "bos"}
REQUESTS = [
    EditRequest("1", "Danielle Darrieux", "P103", "The mother tongue of {} is", "German", "French"),
    EditRequest("2", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("3", "Eiffel Tower", "P131", "The {} is located in the city of", "Berlin", "Paris"),
]
HOOKS = {"grace": {"forward": 1}, "t-patcher": {"forward": 1, "forward_pre": 1}}


def _tiny(arch: str = "GPT2LMHeadModel"):
    return tiny_model(arch, seed=0, tokenizer=FAST.get(arch, "gpt2"))


def _full_state(model):
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def _logits(h, text="The Eiffel Tower is located in the city of"):
    ids = torch.tensor([prompt_ids(h.tokenizer, text)])
    with torch.no_grad():
        return h.model(input_ids=ids).logits


@pytest.fixture(scope="module")
def gpt2():
    return _tiny()


# -- attachments --------------------------------------------------------------------------------

def test_attachments_undo_hooks_and_module_replacements(gpt2):
    h = gpt2
    hooks0, tree0, out0 = hook_counts(h.model), module_tree(h.model), _logits(h)
    att = Attachments()
    mlp_out = h.adapter.module(h.model, "mlp_out", 0)
    att.forward_hook(mlp_out, lambda m, a, o: o * 2)
    att.forward_pre_hook(mlp_out, lambda m, a: None)
    name = h.adapter.module_name("block", 1) + ".mlp"
    original = att.replace_module(h.model, name, torch.nn.Identity())
    assert att.hook_counts() == {"forward": 1, "forward_pre": 1}
    assert att.replaced_modules() == [name]
    assert hook_counts(h.model)["forward"] == hooks0["forward"] + 1
    assert not torch.equal(_logits(h), out0)
    att.remove()
    assert len(att) == 0 and hook_counts(h.model) == hooks0 and module_tree(h.model) == tree0
    assert h.model.get_submodule(name) is original
    assert torch.equal(_logits(h), out0)
    with pytest.raises(AttributeError, match="no submodule"):
        att.replace_module(h.model, "transformer.nothing_here", torch.nn.Identity())


# -- conformance ---------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", sorted(FAST))
@pytest.mark.parametrize("name", NAMES)
def test_check_editor(name, arch):
    rep = check_editor(name, _tiny(arch), REQUESTS)
    assert rep["changed"] == []                 # base weights never change
    assert all(b > a for a, b in zip(rep["logprob_before"], rep["logprob_after"]))


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in TINY_ARCHITECTURES if a not in FAST])
def test_check_editor_other_tiny_architectures(arch):
    h = _tiny(arch)
    for name in NAMES:
        check_editor(name, h, REQUESTS)


@pytest.mark.parametrize("name", NAMES)
def test_sequential_edits_add_only_hooks_and_restore_removes_them(gpt2, name):
    h = gpt2
    hooks0, tree0, state0, out0 = hook_counts(h.model), module_tree(h.model), _full_state(h.model), _logits(h)
    ed = get_editor(name)()
    results = ed.edit(h, REQUESTS, mode="sequential", seed=0)
    try:
        assert [r.case_ids for r in results] == [["1"], ["2"], ["3"]]
        assert all(r.deltas == {} for r in results)
        want = {k: hooks0[k] + HOOKS[name].get(k, 0) for k in hooks0}
        assert hook_counts(h.model) == want and ed.added_hooks(h) == {"forward": 1, "forward_pre": 0,
                                                                      **HOOKS[name]}
        assert module_tree(h.model) == tree0
        now = _full_state(h.model)              # the state dict is untouched while edited
        assert set(now) == set(state0) and all(torch.equal(now[k], state0[k]) for k in now)
        assert len(ed.memory_for(h)) == 3
        assert not torch.equal(_logits(h), out0)
        sizes = [next(iter(r.added.values())).shape[0] for r in results]
        assert sizes == [1, 2, 3]               # each result holds the memory after its call
    finally:
        ed.restore(h)
    assert ed.memory_for(h) is None and ed.added_state(h) == {}
    assert hook_counts(h.model) == hooks0 and module_tree(h.model) == tree0
    now = _full_state(h.model)
    assert all(torch.equal(now[k], state0[k]) for k in state0)
    assert torch.equal(_logits(h), out0)


# -- GRACE ---------------------------------------------------------------------------------------

def test_codebook_replaces_within_the_radius_only():
    book = Codebook(2, 3)
    book.add(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0]), 1.0, (5,), "a")
    book.add(torch.tensor([10.0, 0.0]), torch.tensor([2.0, 2.0, 2.0]), 0.5, (6,), "b")
    x = torch.tensor([[[0.6, 0.79], [0.6, 0.81], [9.6, 0.0], [5.0, 0.0]]])   # |.|: <1, >1, 0.4, 5
    out = book.replace(x, torch.zeros(1, 4, 3))
    assert out[0, :, 0].tolist() == [1.0, 0.0, 2.0, 0.0]
    d, i = book.nearest(torch.tensor([[10.0, 0.0], [0.3, 0.4]]))
    assert d.tolist() == pytest.approx([0.0, 0.5]) and d[0] == 0 and i.tolist() == [1, 0]


def _case(i: str, prompt: str, new: str) -> EditRequest:
    return EditRequest(i, "Toko Yasuda", "P1303", prompt, new, "guitar")


def test_grace_expands_for_the_same_target_and_splits_for_another(gpt2):
    h = gpt2
    ed = get_editor("grace")()
    first = ed.apply(h, [_case("a", "{} plays the", "tennis")], seed=0)
    again = ed.apply(h, [_case("b", "{} plays the", "tennis")], seed=0)
    book = ed.memory_for(h)
    try:
        assert first.diagnostics["grace_action"] == ["new"] and again.diagnostics["grace_action"] == ["expand"]
        assert len(book) == 1 and book.case_ids == [["a", "b"]] and again.diagnostics["key_distance"] == [0.0]
        other = ed.apply(h, [_case("c", "{} plays the", "piano")], seed=0)
        assert other.diagnostics["grace_action"] == ["split"] and len(book) == 2
        assert book.eps.tolist() == pytest.approx([-1e-5, 0.0], abs=1e-9)
        # d = 0: the earlier entry is nearest (ties go to it) and out of reach, so neither
        # answers the shared key, as in the reference
        assert other.diagnostics["steps"] == [0]
        lp = target_logprobs(h, ["Toko Yasuda plays the"] * 2, ["tennis", "piano"])
        ed.restore(h)
        torch.testing.assert_close(lp, target_logprobs(h, ["Toko Yasuda plays the"] * 2,
                                                       ["tennis", "piano"]), rtol=0, atol=0)
    finally:
        ed.restore(h)


def test_grace_split_sets_both_radii_to_half_the_distance(gpt2):
    h = gpt2
    ed = get_editor("grace")({"eps": 1e6})       # every pair of keys within reach
    try:
        ed.apply(h, [_case("a", "{} plays the", "tennis")], seed=0)
        res = ed.apply(h, [_case("b", "{} is a citizen of", "France")], seed=0)
        book = ed.memory_for(h)
        d = float((book.keys[0].double() - book.keys[1].double()).norm())
        assert res.diagnostics["grace_action"] == ["split"]
        assert res.diagnostics["key_distance"][0] == pytest.approx(d, rel=1e-6)
        assert book.eps.tolist() == pytest.approx([d / 2 - 1e-5, d / 2], rel=1e-6)
    finally:
        ed.restore(h)


def test_grace_one_pass_scores_like_prefix_by_prefix_runs(gpt2):
    """Every position is compared with the codebook, so a teacher-forced pass gives each
    position what a run ending there gives (the reference's last-token rule)."""
    h = gpt2
    ed = get_editor("grace")()
    ed.edit(h, REQUESTS, mode="sequential", seed=0)
    try:
        r = REQUESTS[2]
        ids = prompt_ids(h.tokenizer, r.rewrite_prompt) + target_ids(h.tokenizer, r.target_new)
        with torch.no_grad():
            full = h.model(input_ids=torch.tensor([ids])).logits[0]
            each = torch.stack([h.model(input_ids=torch.tensor([ids[:t + 1]])).logits[0, -1]
                                for t in range(len(ids))])
        torch.testing.assert_close(full, each, rtol=1e-5, atol=1e-5)
        assert float((full - _unedited_logits(h, ed, ids)).abs().max()) > 1e-3
    finally:
        ed.restore(h)


def _unedited_logits(h, ed, ids):
    saved = ed.memory_for(h).eps.clone()
    ed.memory_for(h).eps = torch.full_like(saved, -1.0)     # nothing within reach
    try:
        with torch.no_grad():
            return h.model(input_ids=torch.tensor([ids])).logits[0]
    finally:
        ed.memory_for(h).eps = saved


def test_edit_each_rolls_the_memory_back(gpt2):
    h = gpt2
    ed = get_editor("grace")()
    ed.apply(h, REQUESTS[:1], seed=0)
    try:
        keys0 = ed.memory_for(h).keys.clone()
        sizes = ed.edit_each(h, REQUESTS[1:], lambda h_, r, res: len(ed.memory_for(h_)), seed=0)
        assert sizes == [2, 2]
        assert torch.equal(ed.memory_for(h).keys, keys0) and ed.memory_for(h).case_ids == [["1"]]
    finally:
        ed.restore(h)


# -- T-Patcher -----------------------------------------------------------------------------------

def test_patch_output_is_the_added_neurons():
    p = Patches(3, "gelu")
    assert p.output(torch.ones(1, 2, 3)) is None
    k, b = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]), torch.tensor([0.5, -2.0])
    v, a = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)), torch.full((2, 3), 10.0)
    p.append(k, b, v, a, ["x", "y"])
    x = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(1))
    want = torch.nn.functional.gelu(x @ k.T + b) @ (v * a)
    torch.testing.assert_close(p.output(x), want)
    assert TPatcherHParams().layer_of(6) == 5 and TPatcherHParams(layer=2).layer_of(6) == 2
    with pytest.raises(ValueError, match="outside a model with 3 layers"):
        TPatcherHParams(layer=-4).layer_of(3)


def test_tpatcher_freezes_earlier_patches_and_remembers_earlier_edits(gpt2):
    h = gpt2
    ed = get_editor("t-patcher")()
    results = ed.edit(h, REQUESTS, mode="sequential", seed=0)
    try:
        p = ed.memory_for(h)
        assert p.case_ids == ["1", "2", "3"] and p.keys.shape == (3, h.hidden_size)
        first = results[0].added
        for name in ("keys", "bias", "values", "amplify"):
            torch.testing.assert_close(getattr(p, name)[:1].cpu(), first[f"t-patcher.{name}"], rtol=0, atol=0)
        lengths = [len(prompt_ids(h.tokenizer, r.rewrite_prompt)) + len(target_ids(h.tokenizer, r.target_new)) - 1
                   for r in REQUESTS]
        assert p.edit_memory.shape[0] == sum(n - 1 for n in lengths)
        site = Site("mlp_in", h.n_layers - 1, "input")
        for i, (req, res) in enumerate(zip(REQUESTS, results)):
            d = res.diagnostics
            assert d["layer"] == h.n_layers - 1 and d["memory_active"][0] < 0.05
            ids = torch.tensor([prompt_ids(h.tokenizer, req.rewrite_prompt)])
            x_q = trace(h, ids, read=[site]).values[site][0, -1]
            pre = float(x_q @ p.keys[i] + p.bias[i])        # the patch's pre-activation there
            assert d["act_pre_query"][0] == pytest.approx(pre, abs=1e-4)
        # the first and third patches fire on their prompts; the second prompt ends in
        # " the", whose MLP input the sampled memory texts share, and stays below zero
        assert [res.diagnostics["act_pre_query"][0] > 0 for res in results] == [True, False, True]
    finally:
        ed.restore(h)


# -- modes ---------------------------------------------------------------------------------------

def test_memory_editors_declare_their_modes():
    for name in NAMES:
        assert set(get_editor(name).supported_modes) == set(MODES)
    assert all(set(EDITORS.get(n).supported_modes) <= set(MODES) for n in EDITORS.names())
    with pytest.raises(ValueError, match="unknown mode 'bogus'"):
        GRACE.check_mode("bogus")


def test_unsupported_modes_are_refused_by_edit_check_and_config(gpt2, monkeypatch, tmp_path):
    from corredit.config import parse_config

    h = gpt2
    monkeypatch.setattr(GRACE, "supported_modes", ("sequential", "sequential-batch"))
    ed = get_editor("grace")()
    with pytest.raises(ValueError, match="editor 'grace' does not support mode 'batch'; it "
                                         "supports sequential, sequential-batch"):
        ed.edit(h, REQUESTS, mode="batch", seed=0)
    assert ed.memory_for(h) is None and hook_counts(h.model)["forward"] == 0
    check_editor("grace", h, REQUESTS[:1])            # its mode check passes
    cfg = parse_config({"name": "m", "model": "world", "editors": [{"name": "grace", "mode": "batch"}]})
    with pytest.raises(ValueError, match=r"editors\[0\]\.mode: editor 'grace' does not support "
                                         r"mode 'batch'"):
        cfg.check_names()


# -- runs ----------------------------------------------------------------------------------------

def test_memory_editors_run_through_the_runner(tmp_path):
    """GRACE and T-Patcher one fact per step, and GRACE in batches (its codebook emptied
    between batches), over the runner's tiny world."""
    import pandas as pd

    from corredit.config import load_config
    from corredit.models import load
    from corredit.runner import Runner
    from tests.test_runner import make_fixture, run_header

    fx = make_fixture(tmp_path / "world")
    run = tmp_path / "run.toml"
    run.write_text(run_header(fx, "memory", stats=False) + textwrap.dedent(f"""\

        [graph]
        enabled = false

        [schedule]
        schedulers = ["same_subject_together"]
        batch_sizes = [3]

        [evaluate]
        suites = ["probability", "diagnostics"]

        [[editors]]
        name = "grace"
        mode = "sequential"
        stats = false
        hparams = {{ layer = 1, n_iter = 10 }}

        [[editors]]
        name = "t-patcher"
        mode = "sequential"
        stats = false
        hparams = {{ num_steps = 10, min_steps = 5, memory_texts = 8, lr = 0.1 }}

        [[editors]]
        name = "grace"
        label = "grace-batch"
        mode = "batch"
        stats = false
        hparams = {{ layer = 1, n_iter = 10 }}
        """), encoding="utf-8")
    cfg = load_config(run)
    h = load(fx["model"])
    hooks0 = hook_counts(h.model)
    folder = Runner(cfg, tmp_path / "out", handle=h).run()
    df = pd.read_parquet(folder.root / "results.parquet")
    assert {"grace", "t-patcher", "grace-batch"} == set(df["editor"])
    assert hook_counts(h.model) == hooks0
    es = df[(df["metric"] == "ES") & (df["step"] >= 0)]
    assert set(es["case_id"]) == {str(r["case_id"]) for r in _edits(fx["edits"])}
    size = df[(df["metric"] == "codebook_size") & (df["suite"] == "diagnostics")]
    seq = size[size["editor"] == "grace"].sort_values("step")["value"].tolist()
    assert seq == sorted(seq) and seq[-1] >= 6                  # grows along the sequence
    assert set(size[size["editor"] == "grace-batch"]["value"]) <= {1.0, 2.0, 3.0}   # emptied


def _edits(path):
    import json

    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


# -- the world model -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world():
    world_mod = pytest.importorskip("corredit.world")
    try:
        world_mod.default_world_dir(build=False)
    except FileNotFoundError as exc:
        pytest.skip(f"no built world: {exc}")
    from corredit.models import load

    w = world_mod.load_world()
    return w, load("world", device="cpu")


@pytest.mark.parametrize("name", NAMES)
def test_check_editor_on_the_world_model(world, name):
    w, h = world
    reqs = w.requests(n=3, seed=3)
    rep = check_editor(name, h, reqs)
    assert rep["changed"] == [] and all(b > a for a, b in zip(rep["logprob_before"], rep["logprob_after"]))
