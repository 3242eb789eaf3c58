"""The one target encoding shared by every editor and every evaluation suite.

Usage::

    from corredit.models.targets import encode_target, adds_word_prefix
    ids = encode_target(h.tokenizer, "Paris")     # ids of " Paris" as it appears in a text
    prompt_ids = prompt_token_ids(h.tokenizer, "The Eiffel Tower is in")
    row = prompt_ids + ids                          # the teacher-forced sequence

A target ``o`` follows its prompt after one space: its ids are those of ``" " + o``
without special tokens. For a tokenizer that marks a word start itself (SentencePiece's
dummy prefix, as in Llama-2 / Mistral), ``" " + o`` would gain a lone ``"▁"`` token that
never occurs inside a text, so the ids of ``o`` are used instead.
"""

from __future__ import annotations

from typing import Any

__all__ = ["adds_word_prefix", "encode_target"]


def adds_word_prefix(tokenizer: Any) -> bool:
    """Whether the tokenizer marks a word start itself (SentencePiece's dummy prefix, as
    in Llama-2 / Mistral), so that ``" " + target`` would gain a lone ``"▁"`` token:
    true when ``" a"`` tokenizes as a whitespace-only token followed by the tokens of
    ``"a"``."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    spaced = list(tokenizer(" a", add_special_tokens=False)["input_ids"])
    return (len(spaced) == len(plain) + 1 and spaced[1:] == plain
            and tokenizer.decode(spaced[:1]).strip() == "")


def encode_target(tokenizer: Any, target: str, *, word_prefix: bool | None = None) -> list[int]:
    """Token ids of ``" " + target`` without special tokens (see the module docstring);
    raises ``ValueError`` for an empty target or one that tokenizes to nothing."""
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"target {target!r} is empty")
    if word_prefix is None:
        word_prefix = adds_word_prefix(tokenizer)
    text = target if word_prefix else " " + target
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise ValueError(f"target {target!r} tokenizes to no tokens")
    return ids
