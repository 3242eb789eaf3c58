"""The world's vocabulary: entity types, relations with their phrasings, multi-hop chains.

Usage::

    from corredit.world.schema import RELATIONS, relation_by_id
    rel = relation_by_id("born_in")
    rel.phrasings[0]            # '{} was born in'
    rel.subject_first_indices   # (0, 1)

Every relation has two phrasings that open with the subject (``"{} was born in"``) and two
that put the subject after the relation words, right before the object
(``"The birthplace of {} is"``). In a causal model the first kind gives every fact of one
subject the same prefix up to the subject's last token, the second kind does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from corredit.types import subject_comes_first

__all__ = [
    "ENTITY_TYPES",
    "Relation",
    "Chain",
    "RELATIONS",
    "CHAINS",
    "OCCUPATIONS",
    "INSTRUMENTS",
    "relation_by_id",
    "DEPENDENT_GROUPS",
]

#: Entity types, in the order the generator creates them.
ENTITY_TYPES: tuple[str, ...] = (
    "country", "language", "city", "company", "occupation", "instrument", "person",
)

#: Occupations (consonant-initial, so "works as a {}" reads well).
OCCUPATIONS: tuple[str, ...] = (
    "pilot", "baker", "farmer", "teacher", "painter", "lawyer", "nurse", "doctor",
    "sailor", "banker", "tailor", "carpenter", "poet", "chemist", "dancer", "writer",
    "singer", "judge", "surgeon", "miner",
)

#: Musical instruments (always preceded by "the").
INSTRUMENTS: tuple[str, ...] = (
    "violin", "guitar", "piano", "cello", "flute", "harp", "trumpet", "clarinet",
    "banjo", "oboe", "accordion", "saxophone", "trombone", "lute", "mandolin", "drums",
)


@dataclass(frozen=True)
class Relation:
    """A relation between two entity types, with its phrasings (templates holding ``{}``)."""

    id: str
    subject_type: str
    object_type: str
    phrasings: tuple[str, ...]

    def __post_init__(self) -> None:
        for p in self.phrasings:
            if p.count("{}") != 1:
                raise ValueError(f"relation {self.id!r}: phrasing {p!r} must hold one '{{}}'")

    @property
    def subject_first_indices(self) -> tuple[int, ...]:
        """Indices of the phrasings that open with the subject."""
        return tuple(i for i, p in enumerate(self.phrasings) if subject_comes_first(p))

    @property
    def subject_last_indices(self) -> tuple[int, ...]:
        """Indices of the phrasings whose subject follows the relation words."""
        return tuple(i for i, p in enumerate(self.phrasings) if not subject_comes_first(p))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "subject_type": self.subject_type,
                "object_type": self.object_type, "phrasings": list(self.phrasings)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Relation":
        return cls(id=str(d["id"]), subject_type=str(d["subject_type"]),
                   object_type=str(d["object_type"]),
                   phrasings=tuple(str(p) for p in d["phrasings"]))


@dataclass(frozen=True)
class Chain:
    """A multi-hop question: follow ``relations`` from the subject; ``template`` holds ``{}``."""

    relations: tuple[str, ...]
    template: str

    def to_dict(self) -> dict[str, Any]:
        return {"relations": list(self.relations), "template": self.template}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Chain":
        return cls(relations=tuple(str(r) for r in d["relations"]), template=str(d["template"]))


RELATIONS: tuple[Relation, ...] = (
    Relation("born_in", "person", "city", (
        "{} was born in",
        "{} comes from the city of",
        "The birthplace of {} is",
        "The hometown of {} is",
    )),
    Relation("citizen_of", "person", "country", (
        "{} is a citizen of",
        "{} holds a passport from",
        "The country of citizenship of {} is",
        "The nationality of {} is",
    )),
    Relation("occupation", "person", "occupation", (
        "{} works as a",
        "{} earns a living as a",
        "The occupation of {} is",
        "The profession of {} is",
    )),
    Relation("employer", "person", "company", (
        "{} works for",
        "{} is employed by",
        "The employer of {} is",
        "The company that employs {} is",
    )),
    Relation("plays", "person", "instrument", (
        "{} plays the",
        "{} performs music on the",
        "The instrument played by {} is the",
        "The favourite instrument of {} is the",
    )),
    Relation("native_language", "person", "language", (
        "{} grew up speaking",
        "{} is a native speaker of",
        "The native language of {} is",
        "The mother tongue of {} is",
    )),
    Relation("located_in", "city", "country", (
        "{} is a city in",
        "{} is located in",
        "The country containing {} is",
        "The nation that includes {} is",
    )),
    Relation("headquartered_in", "company", "city", (
        "{} is headquartered in",
        "{} has its head office in",
        "The headquarters of {} are in",
        "The head office of {} is in",
    )),
    Relation("capital", "country", "city", (
        "{} has its capital in",
        "{} is governed from",
        "The capital of {} is",
        "The capital city of {} is",
    )),
    Relation("official_language", "country", "language", (
        "{} has the official language",
        "{} conducts official business in",
        "The official language of {} is",
        "The language of government in {} is",
    )),
)

#: Multi-hop questions, keyed by their first relation (the one an edit changes).
CHAINS: tuple[Chain, ...] = (
    Chain(("born_in", "located_in"), "The country where {} was born is"),
    Chain(("born_in", "located_in", "official_language"),
          "The official language of the country where {} was born is"),
    Chain(("citizen_of", "capital"), "The capital of the country of which {} is a citizen is"),
    Chain(("citizen_of", "official_language"),
          "The official language of the country of which {} is a citizen is"),
    Chain(("employer", "headquartered_in"), "The company that employs {} is headquartered in"),
    Chain(("employer", "headquartered_in", "located_in"),
          "The country where the employer of {} is headquartered is"),
    Chain(("located_in", "capital"), "The capital of the country containing {} is"),
    Chain(("located_in", "official_language"),
          "The official language of the country containing {} is"),
    Chain(("headquartered_in", "located_in"), "The country where {} is headquartered is"),
    Chain(("headquartered_in", "located_in", "official_language"),
          "The official language of the country where {} is headquartered is"),
)


#: Relations whose objects the generator derives from each other (a person's citizenship and
#: native language follow from the birth city): an edit of one is not expected to leave the
#: others alone, so they are never locality prompts of each other.
DEPENDENT_GROUPS: tuple[tuple[str, ...], ...] = (("born_in", "citizen_of", "native_language"),)


def relation_by_id(relation_id: str) -> Relation:
    """The relation named ``relation_id``; KeyError lists the known ids."""
    for r in RELATIONS:
        if r.id == relation_id:
            return r
    raise KeyError(f"unknown relation {relation_id!r}; known: {[r.id for r in RELATIONS]}")
