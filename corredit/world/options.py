"""Build options of a world: the graph's size, name sharing, tokenizer, model and training.

Usage::

    from corredit.world.options import WorldOptions
    opts = WorldOptions(seed=3, n_people=120, name_sharing=0.5)
    WorldOptions.from_dict(opts.to_dict()) == opts   # True

The defaults build the shipped default world (``data/world-default``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, asdict
from typing import Any, Mapping

__all__ = ["WorldOptions", "FORMAT_VERSION"]

#: Version of the world folder layout and of the generator; part of the cache key.
FORMAT_VERSION = 1


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class WorldOptions:
    """Everything that decides a world, bit for bit (with the code version).

    Training runs on ``threads`` CPU threads (1 by default): the weights then do not depend
    on the machine's core count, and a single thread is not stalled by other processes the
    way a team of threads is on a busy machine.
    """

    seed: int = _opt(
        0, "seed of every random choice (graph, names, texts, initialisation, data order)")
    # graph
    n_people: int = _opt(300, "number of people (each has 6 facts)")
    n_countries: int = _opt(10, "number of countries")
    n_languages: int = _opt(8, "number of languages (each official in at least one country)")
    cities_per_country: int = _opt(5, "cities per country (one is the capital)")
    n_companies: int = _opt(24, "number of companies")
    n_occupations: int = _opt(16, "number of occupations in use")
    n_instruments: int = _opt(12, "number of instruments in use")
    name_sharing: float = _opt(
        0.2, "probability that a person reuses a name word of an earlier person")
    first_names: int = _opt(
        0, "common first names that people draw from (0: first names are new words, shared "
           "only through name_sharing; >0: name_sharing applies to surnames)")
    whole_word_names: bool = _opt(
        False, "make every word of a person's name a single token (subject ends in one token "
               "that names a family, as frequent surnames do in GPT-2)")
    local_employer_rate: float = _opt(
        0.6, "probability that a person works for a company of their country")
    place_repeat: int = _opt(3, "times each place fact's sentences appear in the training corpus")
    fact_lists: int = _opt(
        0, "training texts per subject that name it once and then list all its facts in a "
           "random order (facts asked for at varying distances from the name)")
    # requests
    n_neighbors: int = _opt(10, "neighbourhood prompts per request (at most)")
    # tokenizer
    vocab_size: int = _opt(1280, "BPE vocabulary size")
    # model
    n_layer: int = _opt(6, "transformer blocks")
    n_embd: int = _opt(128, "hidden size")
    n_head: int = _opt(4, "attention heads")
    n_positions: int = _opt(128, "context length (longest training text must fit)")
    # training
    epochs: int = _opt(8, "passes over the training corpus")
    batch_size: int = _opt(32, "texts per training step")
    lr: float = _opt(3e-3, "peak learning rate (AdamW, warmup then cosine decay)")
    weight_decay: float = _opt(0.01, "AdamW weight decay of matrices")
    warmup_frac: float = _opt(0.03, "share of steps spent warming the learning rate up")
    threads: int = _opt(1, "CPU threads used for training (the weights depend on it)")

    def __post_init__(self) -> None:
        checks = {
            "n_people": self.n_people >= 2,
            "n_countries": self.n_countries >= 2,
            "n_languages": 1 <= self.n_languages,
            "cities_per_country": self.cities_per_country >= 1,
            "n_companies": self.n_companies >= 2,
            "n_occupations": self.n_occupations >= 2,
            "n_instruments": self.n_instruments >= 2,
            "name_sharing": 0.0 <= self.name_sharing <= 1.0,
            "first_names": self.first_names >= 0,
            "local_employer_rate": 0.0 <= self.local_employer_rate <= 1.0,
            "place_repeat": self.place_repeat >= 1,
            "fact_lists": self.fact_lists >= 0,
            "n_neighbors": self.n_neighbors >= 0,
            "vocab_size": self.vocab_size >= 300,
            "n_layer": self.n_layer >= 1,
            "n_embd": self.n_embd >= 8 and self.n_embd % self.n_head == 0,
            "n_positions": self.n_positions >= 16,
            "epochs": self.epochs >= 0,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "threads": self.threads >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"world options: invalid value for {', '.join(bad)} "
                             f"({ {k: getattr(self, k) for k in bad} })")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "options") -> "WorldOptions":
        """Options from a dict; unknown keys raise a ValueError naming ``source``."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown world option(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in d.items()})
