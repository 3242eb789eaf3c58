"""A small GPT-2-style byte-level BPE tokenizer trained on a world's corpus.

Usage::

    from corredit.world.tokenizer import train_tokenizer
    tok = train_tokenizer(["Toma Velik was born in Belun."] * 10, vocab_size=300)
    tok(" Belun", add_special_tokens=False)["input_ids"]
    tok = train_tokenizer(texts, vocab_size=1024, whole_words=["Belun"])   # ' Belun': one token

Like GPT-2: a word carries its leading space (" Belun"), no BOS token is added, and
``<|endoftext|>`` is the end-of-text and padding token (right padding).
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["train_tokenizer", "EOS"]

EOS = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, whole_words: Iterable[str] = (),
                    weight: int = 1000):
    """A ``PreTrainedTokenizerFast`` whose BPE merges are learnt from ``texts``.

    Each of ``whole_words`` (with its leading space) counts ``weight`` extra times, so that
    with enough vocabulary these words become single tokens, as frequent words are in GPT-2.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = list(texts) + [" ".join([w] * weight) for w in whole_words]
    tok.train_from_iterator(lines, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS,
        padding_side="right",
        model_max_length=1024,
    )
    return fast
