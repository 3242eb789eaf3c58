"""Adapters, tracing, additions, snapshot/restore and handles on tiny random models."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from corredit.models import (
    ADAPTERS,
    Addition,
    ArchitectureAdapter,
    ModuleNameError,
    Site,
    UnknownArchitectureError,
    get_adapter,
    register_adapter,
    resolve_module,
    restore,
    snapshot,
    trace,
    tracing,
)
from corredit.models.testing import TINY_ARCHITECTURES, tiny_model

PROMPTS = ["The Eiffel Tower is located in the city of", "Paris is the capital of France"]


@pytest.fixture(scope="module", params=TINY_ARCHITECTURES)
def handle(request):
    return tiny_model(request.param, seed=0)


@pytest.fixture(scope="module")
def gpt2():
    return tiny_model("GPT2LMHeadModel", seed=1)


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def _batch(h):
    return h.encode(PROMPTS)


# -- adapters --------------------------------------------------------------------------


def test_key_times_declared_weight_reproduces_mlp_out(handle):
    h = handle
    a = h.adapter
    assert a.architecture == type(h.model).__name__
    assert (h.n_layers, h.hidden_size, h.key_size) == (3, 32, 64)
    b = _batch(h)
    for layer in range(h.n_layers):
        key, value = Site("mlp_out", layer, "input"), Site("mlp_out", layer, "output")
        res = trace(h, b["input_ids"], b["attention_mask"], read=[key, value])
        W = a.read_mlp_out_weight(h.model, layer)
        assert W.shape == (h.hidden_size, h.key_size)
        stored = dict(h.model.named_parameters())[a.param_name("mlp_out", layer)]
        assert tuple(stored.shape) == ((64, 32) if a.mlp_out_transposed else (32, 64))
        bias = a.read_mlp_out_bias(h.model, layer)
        predicted = res.values[key] @ W.T + (0 if bias is None else bias)
        assert res.values[key].shape == (2, b["input_ids"].shape[1], 64)
        assert res.values[value].abs().max() > 1e-3
        torch.testing.assert_close(predicted, res.values[value], rtol=1e-5, atol=1e-6)


def test_adapter_resolves_every_kind(handle):
    h, a = handle, handle.adapter
    gated = a.mlp_gate is not None
    assert gated == (a.architecture in {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                        "Gemma3ForCausalLM"})
    assert a.mlp_out_transposed == (a.architecture == "GPT2LMHeadModel")
    for layer in range(h.n_layers):
        assert a.module(h.model, "block", layer) is a.block_list(h.model)[layer]
        for kind in ("mlp_in", "mlp_out", "attn_out") + (("mlp_gate",) if gated else ()):
            module = a.module(h.model, kind, layer)
            assert resolve_module(h.model, a.module_name(kind, layer)) is module
            assert a.param_name(kind, layer) in dict(h.model.named_parameters())
    assert a.module(h.model, "unembed").weight.shape == (len(h.tokenizer), h.hidden_size)
    assert a.module(h.model, "final_norm").weight.shape == (h.hidden_size,)
    if not gated:
        with pytest.raises(ValueError, match="not gated"):
            a.module(h.model, "mlp_gate", 0)
    with pytest.raises(IndexError, match="out of range"):
        a.module(h.model, "mlp_out", h.n_layers)
    with pytest.raises(ValueError, match="unknown module kind"):
        a.module_name("mlp", 0)


def test_resolve_module_fails_loudly_on_bad_name(gpt2):
    assert resolve_module(gpt2.model, "transformer.h.0.mlp") is gpt2.model.transformer.h[0].mlp
    with pytest.raises(ModuleNameError, match=r"no child 'mlpx' under transformer\.h\.0; children there: .*mlp"):
        resolve_module(gpt2.model, "transformer.h.0.mlpx.c_proj")
    with pytest.raises(ModuleNameError, match="'7'"):
        resolve_module(gpt2.model, "transformer.h.7")


def test_unknown_architecture_error_explains_registration():
    class MyOwnForCausalLM(nn.Module):
        pass

    with pytest.raises(UnknownArchitectureError) as info:
        get_adapter(MyOwnForCausalLM())
    text = str(info.value)
    assert "'MyOwnForCausalLM'" in text
    assert "register_adapter(ArchitectureAdapter(" in text
    assert "GPT2LMHeadModel" in text  # lists the known ones
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


def test_register_adapter_for_a_new_class(monkeypatch, gpt2):
    monkeypatch.setattr(ADAPTERS, "_entries", dict(ADAPTERS._entries))

    class RenamedGPT2(type(gpt2.model)):
        pass

    base = get_adapter(gpt2.model)
    custom = ArchitectureAdapter(
        architecture="RenamedGPT2", blocks=base.blocks, mlp_in=base.mlp_in, mlp_out=base.mlp_out,
        attn_out=base.attn_out, final_norm=base.final_norm, unembed=base.unembed, mlp_out_transposed=True,
    )
    assert register_adapter(custom) is custom
    gpt2.model.__class__ = RenamedGPT2
    try:
        assert get_adapter(gpt2.model) is custom
    finally:
        gpt2.model.__class__ = RenamedGPT2.__mro__[1]
    with pytest.raises(ValueError, match="already registered"):
        register_adapter(ArchitectureAdapter(**{**custom.__dict__, "blocks": "x"}))
    register_adapter(ArchitectureAdapter(**{**custom.__dict__, "blocks": "x"}), replace=True)
    assert get_adapter("RenamedGPT2").blocks == "x"
    with pytest.raises(Exception):
        custom.blocks = "y"  # frozen


# -- tracing ---------------------------------------------------------------------------


def test_trace_leaves_no_hooks_even_on_errors(handle):
    h = handle
    b = _batch(h)
    sites = [Site("mlp_out", 1, "input"), Site("block", 0, "output"), Site("attn_out", 2, "output")]
    trace(h, b["input_ids"], b["attention_mask"], read=sites)
    assert _hook_count(h.model) == 0
    trace(h, b["input_ids"], b["attention_mask"], read=sites[:2], stop_at_layer=1)
    assert _hook_count(h.model) == 0

    with pytest.raises(RuntimeError, match="boom"):
        with tracing(h, read=sites, stop_at_layer=2):
            assert _hook_count(h.model) == 4
            raise RuntimeError("boom")
    assert _hook_count(h.model) == 0

    bad = {Site("mlp_out", 1, "output"): Addition(torch.tensor([0, 0]), torch.zeros(2, 5))}
    with pytest.raises(ValueError, match="vectors must have shape"):
        trace(h, b["input_ids"], b["attention_mask"], add=bad)
    assert _hook_count(h.model) == 0

    with pytest.raises(ValueError, match="after stop_at_layer"):
        trace(h, b["input_ids"], read=[Site("block", 2, "output")], stop_at_layer=1)
    with pytest.raises(IndexError):
        trace(h, b["input_ids"], read=[Site("block", 3, "output")])
    with pytest.raises(ValueError, match="io must be"):
        trace(h, b["input_ids"], read=[Site("block", 0, "out")])
    assert _hook_count(h.model) == 0


def test_stop_at_layer_stops(handle):
    h = handle
    b = _batch(h)
    calls: list[int] = []
    handles = [
        h.adapter.module(h.model, "block", i).register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
        for i in range(h.n_layers)
    ]
    handles.append(h.adapter.module(h.model, "final_norm").register_forward_pre_hook(lambda m, a: calls.append(-1)))
    try:
        key = Site("mlp_out", 1, "input")
        stopped = trace(h, b["input_ids"], b["attention_mask"], read=[key], stop_at_layer=1)
        assert calls == [0, 1]
        assert stopped.logits is None
        calls.clear()
        full = trace(h, b["input_ids"], b["attention_mask"], read=[key])
        assert calls == [0, 1, 2, -1]
        assert full.logits.shape == (*b["input_ids"].shape, len(h.tokenizer))
        assert torch.equal(stopped.values[key], full.values[key])
        with pytest.raises(ValueError, match="after stop_at_layer=0"):
            with tracing(h, read=[key], stop_at_layer=0):
                pass
        calls.clear()
        with tracing(h, read=[Site("block", 0, "output")], stop_at_layer=0) as res:
            h.model(**b)  # the StopForward raised after block 0 is swallowed by the block
        assert calls == [0]
        torch.testing.assert_close(
            res.values[Site("block", 0, "output")],
            trace(h, b["input_ids"], b["attention_mask"], read=[Site("block", 1, "input")]).values[Site("block", 1, "input")],
            rtol=0, atol=0,
        )
    finally:
        for hd in handles:
            hd.remove()
    assert _hook_count(h.model) == 0


def test_addition_changes_exactly_where_asked(handle):
    h = handle
    b = _batch(h)
    ids, mask = b["input_ids"], b["attention_mask"]
    pos = 3
    vec = torch.randn(2, h.hidden_size, generator=torch.Generator().manual_seed(0))
    add = {Site("mlp_out", 1, "output"): Addition(torch.tensor([pos, -1]), vec)}
    reads = [Site("mlp_out", 1, "output"), Site("block", 1, "output"), Site("block", 2, "output")]
    clean = trace(h, ids, mask, read=reads)
    edited = trace(h, ids, mask, read=reads, add=add)

    for site in reads:  # row 1 (position -1) untouched; row 0 untouched before pos (causal)
        torch.testing.assert_close(edited.values[site][1], clean.values[site][1], rtol=0, atol=0)
        torch.testing.assert_close(edited.values[site][0, :pos], clean.values[site][0, :pos], rtol=0, atol=0)
    # the recorded site value and the residual after block 1 move by exactly the vector at pos
    # (a norm between the MLP output and the residual stream, as in Gemma-3, rescales it)
    for site in reads[:1] if h.adapter.mlp_post_norm else reads[:2]:
        torch.testing.assert_close(edited.values[site][0, pos] - clean.values[site][0, pos], vec[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(edited.values[site][0, pos + 1 :], clean.values[site][0, pos + 1 :], rtol=0, atol=0)
    # later positions change only in the next block (attention reads position pos)
    later = edited.values[reads[2]][0, pos + 1 :] - clean.values[reads[2]][0, pos + 1 :]
    assert later.abs().max() > 1e-6
    assert not torch.equal(edited.logits[0, pos:], clean.logits[0, pos:])
    torch.testing.assert_close(edited.logits[1], clean.logits[1], rtol=0, atol=0)


def test_addition_on_block_output_and_on_key(handle):
    h = handle
    b = _batch(h)
    ids, mask = b["input_ids"], b["attention_mask"]
    gen = torch.Generator().manual_seed(1)
    vec = torch.randn(2, h.hidden_size, generator=gen)
    out0, in1 = Site("block", 0, "output"), Site("block", 1, "input")
    clean = trace(h, ids, mask, read=[out0, in1], stop_at_layer=1)
    torch.testing.assert_close(clean.values[out0], clean.values[in1], rtol=0, atol=0)
    edited = trace(h, ids, mask, read=[out0, in1], add={out0: Addition(torch.tensor([2, 4]), vec)}, stop_at_layer=1)
    expected = clean.values[in1].clone()
    expected[0, 2] += vec[0]
    expected[1, 4] += vec[1]
    torch.testing.assert_close(edited.values[in1], expected, rtol=1e-6, atol=1e-6)

    # adding u to the key at the mlp_out input moves the value by W u
    key, value = Site("mlp_out", 2, "input"), Site("mlp_out", 2, "output")
    u = torch.randn(2, h.key_size, generator=gen)
    base = trace(h, ids, mask, read=[value])
    moved = trace(h, ids, mask, read=[value, key], add={key: Addition(torch.tensor([1, -1]), u)})
    W = h.adapter.read_mlp_out_weight(h.model, 2)
    torch.testing.assert_close(moved.values[value][0, 1] - base.values[value][0, 1], W @ u[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(moved.values[value][1], base.values[value][1], rtol=0, atol=0)


def test_gradients_reach_the_vectors(handle):
    h = handle
    b = _batch(h)
    ids, mask = b["input_ids"], b["attention_mask"]
    params_before = [p.detach().clone() for p in h.model.parameters()]
    for site in (Site("mlp_out", 1, "output"), Site("block", 1, "output")):
        delta = torch.zeros(3, h.hidden_size, requires_grad=True)
        ids3 = torch.cat([ids, ids[:1]])
        mask3 = torch.cat([mask, mask[:1]])
        res = trace(h, ids3, mask3, add={site: Addition(torch.tensor([2, -1, 4]), delta)}, grad=True)
        target = ids3[:, 6]
        loss = torch.nn.functional.cross_entropy(res.logits[:, 5], target, reduction="sum")
        loss.backward()
        assert delta.grad is not None
        assert delta.grad[0].abs().sum() > 0 and delta.grad[2].abs().sum() > 0
        assert torch.equal(delta.grad[1], torch.zeros(h.hidden_size))
        # the gradient agrees with a finite difference along a random direction
        direction = torch.randn(3, h.hidden_size, generator=torch.Generator().manual_seed(2))
        eps = 1e-2

        def loss_at(d):
            r = trace(h, ids3, mask3, add={site: Addition(torch.tensor([2, -1, 4]), d)})
            return torch.nn.functional.cross_entropy(r.logits[:, 5], target, reduction="sum")

        numeric = (loss_at(eps * direction) - loss_at(-eps * direction)) / (2 * eps)
        analytic = (delta.grad * direction).sum()
        assert abs(float(numeric - analytic)) < 1e-2 * max(1.0, abs(float(analytic)))
    # stopped early, gradients still flow into a value read downstream of the addition
    delta = torch.zeros(2, h.hidden_size, requires_grad=True)
    out1 = Site("block", 1, "output")
    res = trace(h, ids, mask, read=[out1], add={Site("block", 0, "output"): Addition(torch.tensor([1, 1]), delta)},
                stop_at_layer=1, grad=True)
    res.values[out1][:, 3].pow(2).sum().backward()
    assert delta.grad.abs().sum() > 0
    for p, before in zip(h.model.parameters(), params_before):
        assert torch.equal(p, before)
    assert _hook_count(h.model) == 0


def test_trace_without_grad_records_detached_values(gpt2):
    b = _batch(gpt2)
    delta = torch.zeros(2, gpt2.hidden_size, requires_grad=True)
    site = Site("mlp_out", 0, "output")
    res = trace(gpt2, b["input_ids"], b["attention_mask"], read=[site], add={site: Addition(torch.tensor([0, 0]), delta)})
    assert not res.values[site].requires_grad and not res.logits.requires_grad


def test_logits_at_chosen_positions_equal_the_full_logits_there(handle):
    h = handle
    b = _batch(h)
    full = trace(h, b["input_ids"], b["attention_mask"]).logits
    T = b["input_ids"].shape[1]
    keep = torch.tensor([[T - 1, 0, 1], [1, 1, T - 2]])
    some = trace(h, b["input_ids"], b["attention_mask"], logit_positions=keep).logits
    assert some.shape == (2, 3, full.shape[-1])
    torch.testing.assert_close(some, full.gather(1, keep[:, :, None].expand(-1, -1, full.shape[-1])),
                               rtol=1e-5, atol=1e-5)
    assert _hook_count(h.model) == 0
    with pytest.raises(ValueError, match="logit_positions must be"):
        trace(h, b["input_ids"], b["attention_mask"], logit_positions=torch.zeros(3, dtype=torch.long))
    assert _hook_count(h.model) == 0


def test_cached_prefix_then_suffix_equals_one_pass(handle):
    """Left-padded prefixes run once with a cache; the suffixes attend to it with explicit
    positions: values, additions and logits equal those of whole right-padded rows."""
    from transformers import DynamicCache

    h = handle
    rows = [h.tokenizer(p)["input_ids"] for p in PROMPTS]
    cut = [len(rows[0]) - 3, 1]                          # prefix lengths differ per row
    b = _batch(h)
    site = Site("mlp_out", 1, "output")
    vec = torch.randn(2, h.hidden_size)
    whole = trace(h, b["input_ids"], b["attention_mask"], read=[site],
                  add={site: Addition(torch.tensor(cut), vec)})
    width, s_width = max(cut), max(len(r) - c for r, c in zip(rows, cut))
    pre = torch.zeros(2, width, dtype=torch.long)
    pre_mask, pre_pos = torch.zeros_like(pre), torch.zeros_like(pre)
    suf, suf_mask = torch.zeros(2, s_width, dtype=torch.long), torch.zeros(2, s_width, dtype=torch.long)
    for i, (r, c) in enumerate(zip(rows, cut)):
        pre[i, width - c:], pre_mask[i, width - c:] = torch.tensor(r[:c]), 1
        pre_pos[i, width - c:] = torch.arange(c)
        suf[i, : len(r) - c], suf_mask[i, : len(r) - c] = torch.tensor(r[c:]), 1
    cache = DynamicCache()
    first = trace(h, pre, attention_mask=pre_mask, position_ids=pre_pos, cache=cache)
    assert first.logits.shape[:2] == (2, width) and cache.get_seq_length() == width
    pos = torch.tensor(cut)[:, None] + torch.arange(s_width)
    rest = trace(h, suf, attention_mask=torch.cat([pre_mask, suf_mask], 1), position_ids=pos,
                 cache=cache, read=[site], add={site: Addition(torch.zeros(2, dtype=torch.long), vec)})
    for i, (r, c) in enumerate(zip(rows, cut)):
        n = len(r) - c
        torch.testing.assert_close(rest.logits[i, :n], whole.logits[i, c: len(r)], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(rest.values[site][i, :n], whole.values[site][i, c: len(r)],
                                   rtol=1e-4, atol=1e-5)
    assert _hook_count(h.model) == 0
    with pytest.raises(ValueError, match="position_ids must have the shape"):
        trace(h, suf, attention_mask=suf_mask, position_ids=pos[:, :1])


def test_eval_mode_restores_the_training_flag_even_on_errors(gpt2):
    from corredit.models import eval_mode

    gpt2.model.train()
    try:
        with eval_mode(gpt2.model):
            assert not gpt2.model.training
        assert gpt2.model.training
        with pytest.raises(RuntimeError, match="boom"):
            with eval_mode(gpt2.model):
                raise RuntimeError("boom")
        assert gpt2.model.training
    finally:
        gpt2.model.eval()
    with eval_mode(gpt2.model):
        pass
    assert not gpt2.model.training


# -- weights ---------------------------------------------------------------------------


def test_restore_is_bit_exact_after_in_place_edit(handle):
    h, a = handle, handle.adapter
    names = [a.param_name("mlp_out", layer) for layer in range(h.n_layers)] + [a.param_name("mlp_in", 1)]
    original = {n: p.detach().clone() for n, p in h.model.named_parameters()}
    snap = snapshot(h.model, names)
    assert set(snap) == set(names)
    b = _batch(h)
    key, value = Site("mlp_out", 1, "input"), Site("mlp_out", 1, "output")
    before = trace(h, b["input_ids"], b["attention_mask"], read=[key, value])
    delta = torch.randn(h.hidden_size, h.key_size, generator=torch.Generator().manual_seed(3)) * 0.1
    W0 = a.read_mlp_out_weight(h.model, 1)
    a.add_to_mlp_out_weight(h.model, 1, delta)
    torch.testing.assert_close(a.read_mlp_out_weight(h.model, 1), W0 + delta)
    after = trace(h, b["input_ids"], b["attention_mask"], read=[value], stop_at_layer=1)
    # in key -> value orientation: v' = v + delta k
    torch.testing.assert_close(after.values[value], before.values[value] + before.values[key] @ delta.T, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        dict(h.model.named_parameters())[a.param_name("mlp_in", 1)].mul_(1.5)
    restore(h.model, snap)
    for n, p in h.model.named_parameters():
        assert torch.equal(p, original[n]), n
    with pytest.raises(ValueError, match="must have shape"):
        a.add_to_mlp_out_weight(h.model, 1, delta.T)
    with pytest.raises(KeyError, match="no parameter or buffer"):
        snapshot(h.model, ["transformer.h.0.mlp.nope.weight"])


def test_snapshot_is_a_copy(gpt2):
    name = gpt2.adapter.param_name("mlp_out", 0)
    snap = snapshot(gpt2.model, [name])
    gpt2.adapter.add_to_mlp_out_weight(gpt2.model, 0, torch.ones(32, 64))
    assert not torch.equal(snap[name], dict(gpt2.model.named_parameters())[name])
    restore(gpt2.model, snap)
    assert torch.equal(snap[name], dict(gpt2.model.named_parameters())[name])


# -- handles and tiny models -------------------------------------------------------------


def test_encode_right_pads_on_device(gpt2):
    enc = gpt2.encode(["Paris", "The capital of France is Paris"])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.device == gpt2.device and ids.shape == mask.shape
    n_short = int(mask[0].sum())
    assert mask[0, :n_short].all() and not mask[0, n_short:].any()
    assert (ids[0, n_short:] == gpt2.tokenizer.pad_token_id).all()
    assert gpt2.tokenizer.pad_token == gpt2.tokenizer.eos_token and gpt2.tokenizer.padding_side == "right"
    assert ids[0, :n_short].tolist() == gpt2.tokenizer("Paris")["input_ids"]
    assert gpt2.encode("Paris", max_length=1)["input_ids"].shape == (1, 1)


def test_tiny_model_is_deterministic_and_keeps_global_rng():
    state = torch.random.get_rng_state()
    a = tiny_model("LlamaForCausalLM", seed=5, tokenizer="bos")
    assert torch.equal(torch.random.get_rng_state(), state)
    b = tiny_model("LlamaForCausalLM", seed=5, tokenizer="bos")
    c = tiny_model("LlamaForCausalLM", seed=6, tokenizer="bos")
    pa, pb, pc = (dict(x.model.named_parameters()) for x in (a, b, c))
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    assert not all(torch.equal(pa[n], pc[n]) for n in pa)
    assert a.tokenizer("The Eiffel Tower")["input_ids"] == b.tokenizer("The Eiffel Tower")["input_ids"]
    assert a.tokenizer("Paris")["input_ids"][0] == a.tokenizer.bos_token_id
    assert not a.model.training
    with pytest.raises(ValueError, match="known"):
        tiny_model("BertModel")


# -- a non-Hugging-Face architecture whose blocks return tuples and take kwargs ---------------


class _ToyBlock(nn.Module):
    def __init__(self, d: int, d_k: int) -> None:
        super().__init__()
        self.attn_out = nn.Linear(d, d)
        self.mlp_in = nn.Linear(d, d_k)
        self.mlp_out = nn.Linear(d_k, d)

    def forward(self, hidden_states, attention_mask=None):
        h = hidden_states + self.attn_out(hidden_states).cumsum(dim=1)  # mixes earlier positions
        return (h + self.mlp_out(torch.relu(self.mlp_in(h)))), None


class ToyForCausalLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.layers = nn.ModuleList(_ToyBlock(8, 16) for _ in range(2))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 11)

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        h = self.embed(input_ids)
        for block in self.layers:
            h = block(hidden_states=h, attention_mask=attention_mask)[0]
        return types.SimpleNamespace(logits=self.head(self.norm(h)))


def test_tuple_outputs_and_keyword_inputs(monkeypatch):
    monkeypatch.setattr(ADAPTERS, "_entries", dict(ADAPTERS._entries))
    register_adapter(ArchitectureAdapter(
        architecture="ToyForCausalLM", blocks="layers", mlp_in="mlp_in", mlp_out="mlp_out",
        attn_out="attn_out", final_norm="norm", unembed="head",
    ))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ToyForCausalLM().eval()
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    out0, in1 = Site("block", 0, "output"), Site("block", 1, "input")
    clean = trace(model, ids, read=[out0, in1])
    assert clean.values[out0].shape == (2, 4, 8)
    torch.testing.assert_close(clean.values[out0], clean.values[in1], rtol=0, atol=0)
    vec = torch.ones(2, 8, requires_grad=True)
    edited = trace(model, ids, read=[in1], add={out0: Addition(torch.tensor([1, -1]), vec)}, grad=True)
    diff = (edited.values[in1] - clean.values[in1]).detach()
    torch.testing.assert_close(diff[0, 1], torch.ones(8))
    assert diff[1].abs().max() == 0 and diff[0, 0].abs().max() == 0 and diff[0, 2:].abs().max() == 0
    edited.logits[0, 3].sum().backward()
    assert vec.grad[0].abs().sum() > 0 and vec.grad[1].abs().sum() == 0
    added_in = trace(model, ids, read=[Site("block", 1, "output")],
                     add={in1: Addition(torch.tensor([-1, 2]), torch.ones(2, 8))})
    assert not torch.equal(added_in.values[Site("block", 1, "output")][1, 2:], trace(
        model, ids, read=[Site("block", 1, "output")]).values[Site("block", 1, "output")][1, 2:])
    assert _hook_count(model) == 0
