"""Incremental value optimisation (fixed prefix run once, suffix every step) against the
full recomputation, on tiny models of every architecture and both tokenizer styles."""

from __future__ import annotations

import pytest
import torch

from corredit.editors import RomeHParams, ValueOptimizer, units_from_requests
from corredit.editors.value_passes import FullPasses, PrefixPasses, prefix_cache_bytes, vocab_size
from corredit.models import Site
from corredit.models.testing import TINY_ARCHITECTURES, tiny_model
from corredit.types import EditRequest

pytestmark = pytest.mark.usefixtures("one_thread")

REQUESTS = [
    EditRequest("1", "Danielle Darrieux", "P103", "The mother tongue of {} is", "German", "French"),
    EditRequest("2", "Toko Yasuda", "P1303", "{} plays the", "tennis", "guitar"),
    EditRequest("3", "Eiffel Tower", "P131", "The {} is located in the city of", "Berlin", "Paris"),
    EditRequest("4", "Paris", "P1", "{} is the capital of", "Italy", "France"),
]
# prefixes of 0 to ~20 tokens: rows longer than the tiny Gemma-3's sliding window of 16
TEMPLATES = ("{}", "A cat. {}", "The dog and the bird live in the house. The sun is a star. {}")
HP = RomeHParams(layer=1, v_num_grad_steps=8, v_weight_decay=0.01, v_lr=0.2, kl_factor=0.5)


def _both(h, site, hp, units, **kw):
    full = ValueOptimizer(h, [site], hp, incremental=False, **kw)
    inc = ValueOptimizer(h, [site], hp, **kw)
    return full.optimize(units), inc.optimize(units), full, inc


def _assert_same(a, b, rel=1e-9):
    scale = a.delta.norm(dim=-1, keepdim=True).clamp(min=1e-30)
    assert float(((a.delta - b.delta).abs() / scale).max()) < rel
    for f in ("loss", "nll", "kl", "nll_init"):
        torch.testing.assert_close(getattr(b, f), getattr(a, f), rtol=rel, atol=1e-12)
    torch.testing.assert_close(b.v0, a.v0, rtol=rel, atol=1e-12)
    assert torch.equal(a.steps, b.steps) and torch.equal(a.stopped, b.stopped)


@pytest.mark.parametrize("tokenizer", ["gpt2", "bos"])
@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_incremental_equals_full_recomputation(arch, tokenizer):
    h = tiny_model(arch, seed=0, tokenizer=tokenizer)
    h.model.double()
    units = units_from_requests(REQUESTS, TEMPLATES)
    site = Site("mlp_out", 1, "output")
    a, b, full, inc = _both(h, site, HP, units, max_batch_tokens=96)   # several chunks
    window = getattr(h.model.config, "sliding_window", None)
    if arch == "Gemma3ForCausalLM":       # the sliding window cuts into the longest rows
        assert max(len(r) for r in inc._rows(units).ids) > window
    assert (a.kl > 0).all() and (a.nll < a.nll_init).all()          # both terms at work
    _assert_same(a, b)
    # the same numbers from a fraction of the token-layers
    assert inc.work["forward"] < 0.6 * full.work["forward"]
    assert inc.work["backward"] < 0.6 * full.work["backward"]


@pytest.mark.parametrize("arch", ["GPT2LMHeadModel", "Gemma3ForCausalLM"])
def test_block_site_early_stopping_and_two_sites(arch):
    h = tiny_model(arch, seed=1, tokenizer="bos")
    h.model.double()
    units = units_from_requests(REQUESTS, TEMPLATES)
    hp = HP.replace(v_num_grad_steps=12)
    free = ValueOptimizer(h, [Site("block", 1, "output")], hp).optimize(units)
    # a threshold half-way down the best fact's loss curve: it stops part-way
    best = int(free.loss.argmin())
    hp = hp.replace(v_stop_loss=float(free.nll_init[best] + free.loss[best]) / 2)
    a, b, _, _ = _both(h, Site("block", 1, "output"), hp, units, max_batch_tokens=64)
    assert b.stopped.any() and not b.stopped.all()
    assert 0 < int(b.steps[b.stopped].max()) < int(b.steps.max())
    _assert_same(a, b)
    # two sites at once (one vector each), the lower one decides what is cached
    sites = [Site("attn_out", 0, "output"), Site("mlp_out", 1, "output")]
    full = ValueOptimizer(h, sites, hp, incremental=False).optimize(units)
    inc = ValueOptimizer(h, sites, hp).optimize(units)
    _assert_same(full, inc)


def test_float32_model_and_cache_budget_split():
    h = tiny_model("LlamaForCausalLM", seed=2, tokenizer="bos")
    units = units_from_requests(REQUESTS, TEMPLATES)
    site = Site("mlp_out", 1, "output")
    a, b, _, _ = _both(h, site, HP, units)
    _assert_same(a, b, rel=1e-4)
    # a cache budget below one unit's prefixes: units run one group at a time
    tiny = ValueOptimizer(h, [site], HP, max_cache_bytes=1).optimize(units)
    assert tiny.case_ids == b.case_ids
    _assert_same(b, tiny, rel=1e-4)


def test_prefix_passes_logits_match_full_passes():
    h = tiny_model("GPT2LMHeadModel", seed=0)
    h.model.double()
    opt = ValueOptimizer(h, [Site("mlp_out", 0, "output")], HP)
    rows = opt._rows(units_from_requests(REQUESTS, TEMPLATES))
    n = len(rows.ids)
    full = FullPasses(h, opt.sites, rows, max_batch_tokens=10_000)
    inc = PrefixPasses(h, opt.sites, rows, max_batch_tokens=10_000)
    assert inc.chunks(range(n)) == [list(c) for c in inc.chunks(range(n))]
    assert sorted(i for c in inc.chunks(range(n)) for i in c) == list(range(n))
    # the memory estimate that splits large calls is that of the keys and values kept
    kept = sum(int(ch.pre_len.sum()) * len(ch.kv) * 2 * ch.kv[0][0].shape[1] * ch.kv[0][0].shape[3]
               * ch.kv[0][0].element_size() for ch in inc._chunks)
    assert prefix_cache_bytes(h, rows) == kept > 0
    vec = torch.randn(len(REQUESTS), 1, h.hidden_size, dtype=torch.float64)
    live = [i for i in range(n) if i % 3]               # a subset of each chunk's rows
    got, want = {}, {}
    for passes, out in ((full, want), (inc, got)):
        for idx in passes.chunks(live):
            logits, values = passes.forward(idx, vec, read=True)
            for j, i in enumerate(idx):
                out[i] = (logits[j], values[opt.sites[0]][j])
    assert sorted(got) == sorted(want) == live
    for i in live:
        k = len(rows.tgt[i]) if rows.kind[i] == 0 else 1       # the slots the loss reads
        torch.testing.assert_close(got[i][0][:k], want[i][0][:k], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got[i][1], want[i][1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("incremental", [True, False])
def test_batches_hold_rows_of_one_slot_count_within_the_logit_budget(incremental):
    """No logits are computed for padding slots, a batch's logits stay within the budget,
    and the budget changes no number."""
    h = tiny_model("LlamaForCausalLM", seed=1, tokenizer="bos")
    h.model.double()
    reqs = [*REQUESTS, EditRequest("5", "Toko Yasuda", "P27", "{} is a citizen of",
                                   "the United Kingdom of Great Britain", "Japan")]
    units = units_from_requests(reqs, TEMPLATES)
    site = Site("mlp_out", 1, "output")
    opt = ValueOptimizer(h, [site], HP, incremental=incremental)
    rows = opt._rows(units)
    slots = {rows.slots(i) for i in range(len(rows.ids))}
    assert len(slots) >= 3                         # KL rows, and targets of several lengths
    engine = PrefixPasses if incremental else FullPasses
    budget = 3 * max(slots) * vocab_size(h)        # three rows of the longest target
    passes = engine(h, [site], rows, max_batch_tokens=10_000, max_logit_elements=budget)
    batches = passes.chunks(range(len(rows.ids)))
    assert sorted(i for b in batches for i in b) == list(range(len(rows.ids)))
    for b in batches:
        k = {rows.slots(i) for i in b}
        assert len(k) == 1 and len(b) * k.pop() * vocab_size(h) <= budget
        logits, _ = passes.forward(b, None)
        assert logits.shape[:2] == (len(b), rows.slots(b[0]))
    small = ValueOptimizer(h, [site], HP, incremental=incremental,
                           max_logit_elements=vocab_size(h)).optimize(units)   # one row a batch
    _assert_same(opt.optimize(units), small, rel=1e-9)
