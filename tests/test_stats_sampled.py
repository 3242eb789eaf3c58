"""The model-sampled statistics corpus: seeded, cached, usable by the statistics pass."""

from __future__ import annotations

from corredit.models.testing import tiny_model
from corredit.stats import second_moments
from corredit.stats.sampled import ModelSampleCorpus, sample_documents


def test_sampling_is_seeded_and_starts_a_document():
    h = tiny_model("GPT2LMHeadModel")
    a = sample_documents(h, n_docs=3, length=6, seed=0)
    assert a == sample_documents(h, n_docs=3, length=6, seed=0)
    assert a != sample_documents(h, n_docs=3, length=6, seed=1)
    assert len(a) == 3 and all(isinstance(t, str) for t in a)


def test_corpus_is_cached_and_feeds_the_statistics(tmp_path, monkeypatch):
    import corredit.stats.sampled as sampled

    h = tiny_model("LlamaForCausalLM", tokenizer="bos")
    corpus = ModelSampleCorpus(h, n_docs=4, length=12, seed=0, cache_dir=tmp_path)
    texts = corpus.texts()
    assert len(list(tmp_path.glob("*.jsonl"))) == 1
    monkeypatch.setattr(sampled, "sample_documents", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    again = ModelSampleCorpus(h, n_docs=4, length=12, seed=0, cache_dir=tmp_path)
    assert again.texts() == texts and again.identity == corpus.identity
    assert ModelSampleCorpus(h, n_docs=4, length=12, seed=1, cache_dir=tmp_path).identity != corpus.identity
    mom = second_moments(h, [0], again, max_tokens=20)
    assert mom[0].count >= 20
