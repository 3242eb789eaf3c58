"""Covariance statistics: correctness against a naive computation, single pass, budget,
padding, cache provenance, resumption and the reference .npz layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from corredit.models.testing import tiny_model
from corredit.stats import (
    ProvenanceError,
    SecondMoment,
    StatsCache,
    TextFileCorpus,
    TextsCorpus,
    iter_token_batches,
    load_npz,
    measure_throughput,
    save_npz,
    second_moments,
)
from corredit.stats.products import default_blocks, error_bound, product_flops
from corredit.stats.throughput import gflops_needed

TEXTS = [
    "The Eiffel Tower is located in the city of Paris, the capital of France.",
    "Rome is the capital of Italy.",
    "A cat.",
    "Thomas Edison invented the light bulb. Marie Curie worked in Paris on radioactivity.",
    "The river Thames flows through London.",
    "   ",  # blank: skipped by the corpus
    "Lionel Messi plays football for a club. Serena Williams plays tennis. The sun is a star.",
    "He was born in Paris.",
    "What is the capital of France? The answer is Paris.",
    "Apple was founded by Steve Jobs. Microsoft was founded by Bill Gates.",
    "Big Ben is in London.",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: one thread is faster


@pytest.fixture(scope="module")
def h():
    return tiny_model("GPT2LMHeadModel", seed=0)


@pytest.fixture(scope="module")
def corpus():
    return TextsCorpus(TEXTS, identity="test-texts")


def naive_moments(h, layers, token_rows):
    """One full forward pass per layer and per document (no padding at all), keys of
    every token, float64 outer products summed one token at a time."""
    out = {}
    for layer in layers:
        module = h.adapter.module(h.model, "mlp_out", layer)
        keys = []
        hook = module.register_forward_pre_hook(lambda m, args: keys.append(args[0].detach()))
        try:
            with torch.no_grad():
                for row in token_rows:
                    h.model(input_ids=torch.tensor([row]))
        finally:
            hook.remove()
        total = torch.zeros(h.key_size, h.key_size, dtype=torch.float64)
        n = 0
        for k in keys:
            for v in k[0].double():
                total += torch.outer(v, v)
                n += 1
        out[layer] = (total, n)
    return out


def token_rows(h, texts, max_length=128, max_tokens=None):
    rows, left = [], max_tokens
    for t in texts:
        if not t.strip():
            continue
        r = h.tokenizer(t, truncation=True, max_length=max_length)["input_ids"]
        if left is not None:
            r = r[:left]
            left -= len(r)
        if r:
            rows.append(r)
        if left == 0:
            break
    return rows


@pytest.mark.parametrize("blocks", [1, 3])
def test_matches_naive_computation_without_padding(h, corpus, blocks):
    # batch_size=1: no padding, so the keys are bit-identical to the naive pass and only
    # the float64 summation order differs; blocks=3 computes upper block rows only
    mom = second_moments(h, [0, 2], corpus, batch_size=1, blocks=blocks)
    ref = naive_moments(h, [0, 2], token_rows(h, TEXTS))
    for layer in (0, 2):
        total, n = ref[layer]
        assert mom[layer].count == n
        assert mom[layer].sum.dtype == torch.float64
        assert torch.equal(mom[layer].sum, mom[layer].sum.T)
        torch.testing.assert_close(mom[layer].sum, total, rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(mom[layer].matrix(), total / n, rtol=1e-12, atol=1e-12)


def test_padding_is_excluded(h, corpus):
    batches = list(iter_token_batches(h.tokenizer, corpus, batch_size=4, max_length=128))
    assert any(not bool(b.attention_mask.all()) for b in batches)  # padding present
    padded = second_moments(h, [1], corpus, batch_size=4)[1]
    ref, n = naive_moments(h, [1], token_rows(h, TEXTS))[1]
    assert padded.count == n == sum(len(r) for r in token_rows(h, TEXTS))
    # keys of a padded batch differ from single-document keys only by float32 rounding
    torch.testing.assert_close(padded.sum, ref, rtol=1e-5, atol=1e-5)


def test_single_pass_stops_at_the_highest_key(h, corpus):
    calls: dict[tuple[str, int], int] = {}

    def count(kind, i):
        return lambda m, a, o: calls.__setitem__((kind, i), calls.get((kind, i), 0) + 1)

    hooks = [h.adapter.module(h.model, kind, i).register_forward_hook(count(kind, i))
             for i in range(h.n_layers) for kind in ("block", "mlp_in", "mlp_out")]
    hooks.append(h.model.get_output_embeddings().register_forward_hook(count("head", 0)))
    try:
        second_moments(h, [1, 0], corpus, batch_size=4)
    finally:
        for hk in hooks:
            hk.remove()
    n = len(list(iter_token_batches(h.tokenizer, corpus, batch_size=4)))
    assert n == 3
    # one pass per batch; layer 1 runs up to its key (mlp_out's input), nothing after it
    assert calls == {("block", 0): n, ("mlp_in", 0): n, ("mlp_out", 0): n, ("mlp_in", 1): n}


@pytest.mark.parametrize("budget", [1, 37, 64])
def test_budget_is_exact(h, corpus, budget):
    mom = second_moments(h, [2], corpus, max_tokens=budget, batch_size=3)[2]
    assert mom.count == budget
    ref, n = naive_moments(h, [2], token_rows(h, TEXTS, max_tokens=budget))[2]
    assert n == budget
    torch.testing.assert_close(mom.sum, ref, rtol=1e-5, atol=1e-5)


def test_mixed_precision_is_close_and_cached_apart(tmp_path, h, corpus):
    exact = second_moments(h, [2], corpus, batch_size=4)[2]
    mixed = second_moments(h, [2], corpus, batch_size=4, precision="mixed", blocks=2)[2]
    assert mixed.provenance["dtype"] == "mixed" and exact.provenance["dtype"] == "float64"
    assert not torch.equal(mixed.sum, exact.sum)
    torch.testing.assert_close(mixed.sum, exact.sum, rtol=1e-5, atol=1e-5)
    assert torch.equal(mixed.sum, mixed.sum.T)
    a = StatsCache(tmp_path, batch_size=4).get(h, [2], corpus, 50)[2]
    b = StatsCache(tmp_path, batch_size=4, precision="mixed").get(h, [2], corpus, 50)[2]
    assert a.provenance["dtype"] == "float64" and b.provenance["dtype"] == "mixed"
    assert len(list(tmp_path.rglob("layer2.npz"))) == 2
    with pytest.raises(ValueError, match="unknown precision"):
        second_moments(h, [2], corpus, precision="float16")


def test_mixed_error_within_the_stated_bound(h, corpus):
    # batch_size=1: no padding, so the keys are those of the naive pass and the exact
    # float64 sum of their products is known; flush_tokens=8 flushes many small blocks
    rows = token_rows(h, TEXTS)
    flush = 8
    mixed = second_moments(h, [1], corpus, batch_size=1, precision="mixed", flush_tokens=flush)[1]
    assert mixed.provenance["flush_tokens"] == flush
    module = h.adapter.module(h.model, "mlp_out", 1)
    keys = []
    hook = module.register_forward_pre_hook(lambda m, args: keys.append(args[0][0].double()))
    try:
        with torch.no_grad():
            for r in rows:
                h.model(input_ids=torch.tensor([r]))
    finally:
        hook.remove()
    k = torch.cat(keys)
    exact, absolute = k.T @ k, k.abs().T @ k.abs()
    err = (mixed.sum - exact).abs()
    block = flush + max(len(r) for r in rows)          # a block's most tokens
    assert mixed.count == k.shape[0]
    assert 0 < float(err.max())                                       # not float64 products
    assert bool((err <= error_bound(block) * absolute + 1e-12 * absolute).all())
    # typical errors: far inside the worst case, about sqrt(M) u of |K|^T |K|
    assert float((err / absolute.clamp(min=1e-30)).max()) < error_bound(block) / 4
    assert float(err.norm() / exact.norm()) < 1e-6


def test_throughput_counts_the_budget_and_reports_each_repeat(h, corpus):
    import statistics

    res = measure_throughput(h, [0, 2], corpus, max_tokens=60, batch_size=4, repeats=3,
                             precision="mixed")
    assert res["tokens"] == 60
    assert len(res["ratios"]) == 3 and res["ratio"] == statistics.median(res["ratios"])
    assert res["stats_tokens_per_s"] > 0 and res["forward_tokens_per_s"] > 0
    assert all(r > 0 for r in res["ratios"])
    assert res["products_tokens_per_s"] > 0 and 0 < res["ceiling"] < 1
    d = h.key_size                       # 2 layers; default_blocks(d) row blocks
    assert res["symmetric_flops_per_token"] == 2 * d * (d + 1)
    assert res["product_flops_per_token"] == 2 * product_flops(d, default_blocks(d))
    assert res["products_gflops"] == pytest.approx(
        res["product_flops_per_token"] * res["products_tokens_per_s"] / 1e9)
    assert res["full_product_gflops"] > 0 and res["keys_tokens_per_s"] > 0
    with pytest.raises(ValueError, match="repeats must be at least 1, got 0"):
        measure_throughput(h, [0], corpus, max_tokens=10, repeats=0)
    with pytest.raises(ValueError, match="product_tokens must be positive"):
        measure_throughput(h, [0], corpus, max_tokens=10, product_tokens=0)
    with pytest.raises(ValueError, match="corpus 'empty' yields no tokens"):
        measure_throughput(h, [0], TextsCorpus(["   "], identity="empty"), max_tokens=10)


def test_throughput_times_each_pass_alone(h, corpus, monkeypatch):
    # a clock that advances one second a reading: every throughput timed over exactly
    # one pass reads its tokens per second
    import itertools
    import types

    import corredit.stats.throughput as throughput

    clock = itertools.count()
    monkeypatch.setattr(throughput, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    res = measure_throughput(h, [0, 2], corpus, max_tokens=60, batch_size=2, repeats=2,
                             product_tokens=1)
    for key in ("stats_tokens_per_s", "forward_tokens_per_s", "keys_tokens_per_s"):
        assert res[key] == 60, key
    first = next(iter_token_batches(h.tokenizer, corpus, batch_size=2, max_tokens=60))
    captured = res["products_tokens_per_s"]      # products timed on the first batch's keys
    assert captured == first.n_tokens < 60
    assert res["full_product_gflops"] == pytest.approx(2 * 2 * h.key_size ** 2 * captured / 1e9)
    assert res["ratios"] == [1.0, 1.0]


def test_product_flops_count_the_block_rows_upper_parts():
    assert product_flops(512, 1) == 2 * 512 * 512
    assert product_flops(512, 8) / product_flops(512, 1) == 0.5625
    assert product_flops(512, 2) == 2 * (256 * 512 + 256 * 256)
    assert product_flops(512) == 512 * 513                     # the symmetric minimum
    # blocks that do not divide d_k (edges 0, 4, 7): rows 0-3 times 7 columns, rows 4-6 times 3
    assert product_flops(7, 2) == 2 * (4 * 7 + 3 * 3)


def test_gflops_needed_for_a_ratio():
    # 1e9 flops a token at 1 token/s: a ratio of 0.8 leaves a quarter second for them
    assert gflops_needed(1e9, 1.0, 0.8) == pytest.approx(4.0)
    assert gflops_needed(1e9, 2.0, 0.5) == pytest.approx(2.0)
    # a forward pass to the keys of 1.25 tokens/s leaves 1.25 - 0.8 = 0.45 s a token
    assert gflops_needed(1e9, 1.0, 0.8, keys_tokens_per_s=1.25) == pytest.approx(1 / 0.45)
    assert gflops_needed(1e9, 1.0, 0.8, keys_tokens_per_s=0.8) == math.inf
    for bad in (0, 1, 1.2):
        with pytest.raises(ValueError, match=f"ratio must lie strictly between 0 and 1, got {bad}"):
            gflops_needed(1e9, 1.0, bad)
    with pytest.raises(ValueError, match="throughputs must be positive, got forward 1.0 and keys 0"):
        gflops_needed(1e9, 1.0, 0.8, keys_tokens_per_s=0)


def test_products_are_timed_on_the_keys_the_pass_multiplies(h, corpus):
    from corredit.stats.throughput import _keys_pass

    batches = list(iter_token_batches(h.tokenizer, corpus, batch_size=4, max_tokens=60))
    captured = _keys_pass(h, [0, 2], batches, max_tokens=10_000, capture=True)
    assert len(captured) == len(batches) and sum(n for _, n in captured) == 60
    assert all(keys[l].shape == (n, h.key_size) for keys, n in captured for l in (0, 2))
    mom = second_moments(h, [0, 2], corpus, max_tokens=60, batch_size=4)
    for layer in (0, 2):
        k = torch.cat([keys[layer] for keys, _ in captured]).double()
        torch.testing.assert_close(k.T @ k, mom[layer].sum, rtol=1e-9, atol=1e-9)
    first = _keys_pass(h, [0, 2], batches, max_tokens=1, capture=True)
    assert len(first) == 1 and first[0][1] == batches[0].n_tokens


def test_mixed_resumed_equals_uninterrupted(tmp_path, h, corpus):
    # checkpoints wait for a flush of the float32 partial sums, so the resumed run
    # flushes where the uninterrupted one does
    whole = second_moments(h, [0, 2], corpus, max_tokens=90, batch_size=2, precision="mixed",
                           flush_tokens=40)
    cache = StatsCache(tmp_path, batch_size=2, checkpoint_every=1, precision="mixed",
                       flush_tokens=40)
    with pytest.raises(KeyboardInterrupt):
        cache.get(h, [0, 2], _Interrupting(corpus, after=5), max_tokens=90)
    assert cache.partial_path(h, [0, 2], corpus, 90).is_file()
    resumed = cache.get(h, [0, 2], corpus, max_tokens=90)
    for layer in (0, 2):
        assert resumed[layer].count == 90
        assert torch.equal(resumed[layer].sum, whole[layer].sum)  # bit for bit


def test_truncation_and_exhausted_corpus_warns(h):
    c = TextsCorpus(["Paris is the capital of France. " * 20])
    with pytest.warns(UserWarning, match="ran out"):
        m = second_moments(h, [0], c, max_tokens=1000, max_length=16)[0]
    assert m.count == 16


def test_rejects_bad_layers(h, corpus):
    with pytest.raises(ValueError, match="out of range"):
        second_moments(h, [3], corpus)
    with pytest.raises(ValueError, match="no layers"):
        second_moments(h, [], corpus)


def test_cache_hit_miss_and_provenance(tmp_path, corpus):
    h = tiny_model("GPT2LMHeadModel", seed=0)  # own copy: its weights get modified below
    cache = StatsCache(tmp_path, batch_size=4)
    first = cache.get(h, [0, 2], corpus, max_tokens=40)
    assert cache.path(h, 0, corpus, 40).is_file() and cache.path(h, 2, corpus, 40).is_file()
    prov = first[2].provenance
    assert prov["weights_hash"].startswith("sha256:") and prov["corpus"] == "test-texts"
    assert prov["tokens"] == 40 and prov["layer"] == 2 and prov["dtype"] == "float64"

    # a hit runs no forward pass
    calls = []
    hook = h.adapter.module(h.model, "mlp_in", 0).register_forward_hook(lambda *a: calls.append(1))
    try:
        again = cache.get(h, [2, 0], corpus, max_tokens=40)
        assert calls == []
        assert torch.equal(again[0].sum, first[0].sum) and again[0].count == 40
        # another budget is another entry: a miss
        other = cache.get(h, [0], corpus, max_tokens=20)
        assert len(calls) > 0 and other[0].count == 20
    finally:
        hook.remove()
    with pytest.raises(FileNotFoundError, match="no cached statistics"):
        cache.get(h, [1], corpus, max_tokens=40, compute=False)

    # changed weights: the entry is refused, or recomputed on request
    with torch.no_grad():
        h.adapter.module(h.model, "mlp_in", 0).weight.mul_(1.5)
    with pytest.raises(ProvenanceError, match="weights_hash"):
        cache.get(h, [0], corpus, max_tokens=40)
    redo = StatsCache(tmp_path, batch_size=4, on_mismatch="recompute").get(h, [0], corpus, 40)
    assert not torch.allclose(redo[0].sum, first[0].sum)
    assert cache.get(h, [0], corpus, max_tokens=40)[0].provenance["weights_hash"] != prov["weights_hash"]


class _Interrupting:
    """A corpus that fails after yielding ``after`` documents (a killed run)."""

    def __init__(self, inner, after):
        self.inner, self.after = inner, after
        self.identity = inner.identity

    def documents(self, start=0):
        for i, d in enumerate(self.inner.documents(start)):
            if i == self.after:
                raise KeyboardInterrupt("simulated interruption")
            yield d


class _Recording:
    def __init__(self, inner):
        self.inner, self.starts = inner, []
        self.identity = inner.identity

    def documents(self, start=0):
        self.starts.append(start)
        return self.inner.documents(start)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, h, corpus):
    whole = second_moments(h, [0, 2], corpus, max_tokens=90, batch_size=2)
    cache = StatsCache(tmp_path, batch_size=2, checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        cache.get(h, [0, 2], _Interrupting(corpus, after=5), max_tokens=90)
    partial = cache.partial_path(h, [0, 2], corpus, 90)
    assert partial.is_file()
    # the resumed run uses the recorded batch size even when asked for another
    rec = _Recording(corpus)
    resumed = cache.get(h, [0, 2], rec, max_tokens=90, batch_size=7)
    assert rec.starts == [4]  # two finished batches of two documents were kept
    assert not partial.exists()
    for layer in (0, 2):
        assert resumed[layer].count == whole[layer].count == 90
        assert torch.equal(resumed[layer].sum, whole[layer].sum)  # bit for bit


def test_npz_round_trip_and_reference_layout(tmp_path, h, corpus):
    m = second_moments(h, [1], corpus, max_tokens=30, batch_size=4)[1]
    path = save_npz(tmp_path / "s.npz", m)
    with np.load(path) as d:
        assert {"mom2.mom2", "mom2.count"} <= set(d.files)
        assert d["mom2.mom2"].dtype == np.float64 and int(d["mom2.count"]) == 30
    back = load_npz(path)
    assert torch.equal(back.sum, m.sum) and back.count == 30 and back.layer == 1
    assert back.provenance["corpus"] == "test-texts"

    # a file written the reference way (float32 sum, no provenance) imports into the cache
    ref = tmp_path / "transformer.h.1.mlp.c_proj_float32_mom2_100.npz"
    np.savez(ref, **{"mom2.mom2": m.sum.numpy().astype(np.float32),
                     "mom2.count": np.array(m.count), "sample_size": np.array(100)})
    cache = StatsCache(tmp_path / "cache")
    cache.import_npz(ref, h, 1, corpus, max_tokens=30)
    got = cache.get(h, [1], corpus, max_tokens=30, compute=False)[1]
    torch.testing.assert_close(got.sum, m.sum, rtol=1e-6, atol=1e-6)
    assert got.count == 30

    with pytest.raises(KeyError, match="mom2.mom2"):
        np.savez(tmp_path / "bad.npz", x=np.zeros(2))
        load_npz(tmp_path / "bad.npz")


def test_second_moment_accumulator():
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(10, 3, generator=g)
    m = SecondMoment.zeros(3, layer=0).add(keys[:4]).add(keys[4:])
    torch.testing.assert_close(m.sum, keys.double().T @ keys.double())
    assert m.count == 10
    with pytest.raises(ValueError, match="holds no tokens"):
        SecondMoment.zeros(3).matrix()


def test_corpus_identities():
    from corredit.stats import HFDatasetCorpus

    assert TextsCorpus(["a", "b"]).identity == TextsCorpus(["a", " ", "b"]).identity
    assert TextsCorpus(["a", "b"]).identity != TextsCorpus(["b", "a"]).identity
    assert list(TextsCorpus(["a", "", "b", "c"]).documents(start=1)) == ["b", "c"]
    hf = HFDatasetCorpus("wikitext", config="wikitext-103-raw-v1", split="train")
    assert hf.identity == ("hf:wikitext:config=wikitext-103-raw-v1:split=train:field=text:"
                           "revision=None")  # built without importing or downloading
    with pytest.raises(ValueError, match="text 1 is a int"):
        TextsCorpus(["a", 3])


def test_wikitext_file_corpus(shared_data, h):
    path = shared_data / "wikitext2" / "wiki.test.raw.txt"
    c = TextFileCorpus(path, clean="wikitext")
    assert c.identity == TextFileCorpus(path, clean="wikitext").identity
    assert c.identity != TextFileCorpus(path).identity
    docs = list(c.documents())
    assert len(docs) > 2000
    assert not any(d.startswith("= ") and d.endswith(" =") for d in docs)  # headings dropped
    assert docs[0].startswith("Robert Boulter is an English film, television")
    assert " @-@ " not in docs[0] and "guest-starring" in docs[0]
    assert list(c.documents(start=5))[0] == docs[5]
    m = second_moments(h, [2], c, max_tokens=500, batch_size=8)[2]
    assert m.count == 500 and m.provenance["documents"] <= 8


def test_cli_compute(tmp_path, h, capsys):
    from corredit.cli import main

    h.model.save_pretrained(tmp_path / "model")
    h.tokenizer.save_pretrained(tmp_path / "model")
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(TEXTS), encoding="utf-8")
    rc = main(["stats", "compute", "--model", str(tmp_path / "model"), "--layers", "0,2",
               "--corpus", str(text), "--max-tokens", "33", "--cache", str(tmp_path / "c"),
               "--export-dir", str(tmp_path / "ref"), "--batch-size", "4"])
    assert rc == 0
    out = capsys.readouterr().out
    assert '"tokens": 33' in out
    exported = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert exported == ["transformer.h.0.mlp.c_proj_float64_mom2_3.npz",
                        "transformer.h.2.mlp.c_proj_float64_mom2_3.npz"]
