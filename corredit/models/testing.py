"""Tiny random models of every supported architecture, with locally built tokenizers,
for tests (no downloads, deterministic, well under a second each).

Usage::

    from corredit.models.testing import tiny_model, TINY_ARCHITECTURES
    h = tiny_model("GPT2LMHeadModel", seed=0)                 # GPT-2-style byte-level BPE
    h = tiny_model("LlamaForCausalLM", tokenizer="bos")       # BOS-adding, "▁" word marks
    h.model, h.tokenizer, h.adapter

``tokenizer="gpt2"`` is a byte-level BPE with GPT-2's leading-space convention and a
single ``<|endoftext|>`` token (no BOS added); ``tokenizer="bos"`` is a Llama-style BPE
(metaspace pre-tokenizer, ``<s>`` prepended to every text); ``tokenizer="spm"`` is that
tokenizer rebuilt as Llama-2's SentencePiece tokenizers are (a dummy ``"▁"`` prefix on every
text, no pre-tokenizer split), so ``" Paris"`` tokenizes as ``["▁", "▁Paris"]``. All are
trained on a small built-in text, so common words are single tokens and rarer names split
into several.
"""

from __future__ import annotations

import string
from typing import Any, Callable

import torch

from corredit.models.handle import ModelHandle, wrap

__all__ = ["TINY_ARCHITECTURES", "TINY_TOKENIZERS", "TINY_TEXT", "tiny_tokenizer", "tiny_model"]

#: Built-in training text of the tiny tokenizers.
TINY_TEXT = """\
The Eiffel Tower is located in the city of Paris, the capital of France.
Paris is the capital of France. Berlin is the capital of Germany. Rome is the capital of Italy.
Madrid is the capital of Spain. London is the capital of the United Kingdom.
Danielle Darrieux was an actress. The mother tongue of Danielle Darrieux is French.
The Space Needle is in Seattle. The Colosseum is in Rome. Big Ben is in London.
Toko Yasuda plays the guitar. Autonomous University of Madrid is located in Spain.
Apple was founded by Steve Jobs. Microsoft was founded by Bill Gates.
The official language of Italy is Italian. The official language of Germany is German.
He was born in Paris. She was born in Berlin. They live in Rome. We work in Madrid.
Thomas Edison invented the light bulb. Marie Curie worked in Paris on radioactivity.
The river Thames flows through London. The river Seine flows through Paris.
Lionel Messi plays football for a club. Serena Williams plays tennis.
The headquarters of the company is in the city. The language of the people is old.
What is the capital of France? The answer is Paris. What is the name of the city?
A cat, a dog and a bird live in the house. The sun is a star and the moon is a rock.
Numbers: 1 2 3 4 5 6 7 8 9 10 100 2024. Words in 'quotes' and (brackets) and "double".
"""

TINY_TOKENIZERS = ("gpt2", "bos", "spm")
_VOCAB_SIZE = 420


def _lines() -> list[str]:
    return [line for line in TINY_TEXT.splitlines() if line.strip()]


def _gpt2_style() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_lines(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


def _bos_style() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=sorted(set(string.printable.strip()) | {"▁"}),
        show_progress=False,
    )
    tok.train_from_iterator(_lines(), trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _spm_style() -> Any:
    from tokenizers import normalizers

    tok = _bos_style()
    backend = tok.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None
    return tok


def tiny_tokenizer(kind: str = "gpt2") -> Any:
    """A fresh fast tokenizer built locally: ``"gpt2"``, ``"bos"`` or ``"spm"`` (see
    module doc)."""
    builders: dict[str, Callable[[], Any]] = {"gpt2": _gpt2_style, "bos": _bos_style, "spm": _spm_style}
    if kind not in builders:
        raise ValueError(f"unknown tiny tokenizer {kind!r}; known: {', '.join(TINY_TOKENIZERS)}")
    return builders[kind]()


def _config(architecture: str, vocab: int, ids: dict[str, int]) -> Any:
    import transformers as tf

    common = dict(vocab_size=vocab, initializer_range=0.1, tie_word_embeddings=False, **ids)
    llama_like = dict(
        num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, **common,
    )
    configs: dict[str, Callable[[], Any]] = {
        "GPT2LMHeadModel": lambda: tf.GPT2Config(
            n_layer=3, n_embd=32, n_inner=64, n_head=4, n_positions=128,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common,
        ),
        "GPTJForCausalLM": lambda: tf.GPTJConfig(
            n_layer=3, n_embd=32, n_inner=64, n_head=4, n_positions=128, rotary_dim=4,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common,
        ),
        "GPTNeoXForCausalLM": lambda: tf.GPTNeoXConfig(
            num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=4,
            max_position_embeddings=128, **common,
        ),
        "LlamaForCausalLM": lambda: tf.LlamaConfig(**llama_like),
        "MistralForCausalLM": lambda: tf.MistralConfig(**llama_like),
        "Qwen2ForCausalLM": lambda: tf.Qwen2Config(**llama_like),
        "Gemma3ForCausalLM": lambda: tf.Gemma3TextConfig(
            head_dim=8, sliding_window=16, query_pre_attn_scalar=8,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            **llama_like),
    }
    if architecture not in configs:
        raise ValueError(f"no tiny config for {architecture!r}; known: {', '.join(configs)}")
    return configs[architecture]()


#: Architectures :func:`tiny_model` can build (one per registered adapter).
TINY_ARCHITECTURES = (
    "GPT2LMHeadModel",
    "GPTJForCausalLM",
    "GPTNeoXForCausalLM",
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Gemma3ForCausalLM",
)


def tiny_model(architecture: str, *, seed: int = 0, tokenizer: str = "gpt2", device: str | torch.device = "cpu") -> ModelHandle:
    """A 3-layer, width-32 (MLP width 64) random model of ``architecture`` with a
    locally built tokenizer, in eval mode on ``device``; same arguments -> same weights.
    The global torch random state is left untouched."""
    from transformers import AutoModelForCausalLM

    tok = tiny_tokenizer(tokenizer)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.eos_token_id}
    config = _config(architecture, len(tok), ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.to(device)
    return wrap(model, tok, name=f"tiny-{architecture}-{tokenizer}-seed{seed}")
