"""Invented names built from syllables, and how much subjects' names overlap.

Usage::

    import random
    from corredit.world.names import NameFactory, person_names, shared_name_share
    f = NameFactory(random.Random(0))
    f.word()                                   # 'Velun'
    people = person_names(f, 100, sharing=0.2, rng=random.Random(1))
    shared_name_share(people)                  # fraction of people sharing a name word

Every word the factory hands out is new (no two entities get the same word by chance), so
the only surface overlap between subjects' names is the one ``sharing`` asks for.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Iterable, Sequence

__all__ = ["NameFactory", "person_names", "shared_name_share", "name_words"]

_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gr", "kr", "tr", "st")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o")
_CODAS = ("", "", "", "", "n", "r", "l", "s", "m")


class NameFactory:
    """Hands out capitalised invented words, never the same word twice.

    ``reserved`` words (lower-case) are never produced, e.g. the words of the templates.
    """

    def __init__(self, rng: random.Random, reserved: Iterable[str] = (),
                 min_syllables: int = 2, max_syllables: int = 3) -> None:
        self.rng = rng
        self.min_syllables = min_syllables
        self.max_syllables = max_syllables
        self._used: set[str] = {w.lower() for w in reserved}

    def _syllable(self) -> str:
        r = self.rng
        return r.choice(_ONSETS) + r.choice(_VOWELS) + r.choice(_CODAS)

    def word(self) -> str:
        """A new word of 2-3 syllables (3 with probability 1/3 by default)."""
        for _ in range(10_000):
            n = self.min_syllables
            if self.max_syllables > n and self.rng.random() < 1 / 3:
                n += 1
            w = "".join(self._syllable() for _ in range(n)).capitalize()
            if w.lower() not in self._used and 4 <= len(w) <= 10:
                self._used.add(w.lower())
                return w
        raise RuntimeError("name space exhausted: lower the number of entities")


def person_names(factory: NameFactory, n: int, sharing: float,
                 rng: random.Random, first_pool: int = 0) -> list[str]:
    """``n`` distinct two-word names ("First Last").

    With ``first_pool=0``: with probability ``sharing`` a person reuses one name word (the
    first name or, equally often, the surname) of an earlier person; otherwise both words are
    new, so ``sharing=0`` gives names without any word in common.

    With ``first_pool=k > 0``: first names are drawn from ``k`` common first names (as in real
    populations, a first name alone rarely tells people apart) and ``sharing`` is the
    probability that a person reuses the surname of an earlier person (a family name).
    """
    if not 0.0 <= sharing <= 1.0:
        raise ValueError(f"name sharing must lie in [0, 1], got {sharing}")
    if first_pool < 0:
        raise ValueError(f"first-name pool must be >= 0, got {first_pool}")
    pool = [factory.word() for _ in range(first_pool)]
    firsts: list[str] = []
    lasts: list[str] = []
    names: list[str] = []
    taken: set[str] = set()
    for i in range(n):
        for _ in range(1000):
            first, last = None, None
            if pool:
                first = rng.choice(pool)
                if i > 0 and rng.random() < sharing:
                    last = rng.choice(lasts)
            elif i > 0 and rng.random() < sharing:
                if rng.random() < 0.5:
                    first = rng.choice(firsts)
                else:
                    last = rng.choice(lasts)
            first = first or factory.word()
            last = last or factory.word()
            name = f"{first} {last}"
            if name not in taken:
                break
        else:  # pragma: no cover - needs an absurd sharing rate on a tiny pool
            raise RuntimeError("could not draw a new person name")
        taken.add(name)
        firsts.append(first)
        lasts.append(last)
        names.append(name)
    return names


def name_words(name: str) -> tuple[str, ...]:
    """The words of a name."""
    return tuple(name.split())


def shared_name_share(names: Sequence[str]) -> float:
    """Fraction of ``names`` that share at least one word with another name of the list."""
    if not names:
        return 0.0
    counts = Counter(w for n in names for w in set(name_words(n)))
    shared = sum(1 for n in names if any(counts[w] > 1 for w in set(name_words(n))))
    return shared / len(names)
