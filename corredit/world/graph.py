"""The knowledge graph: typed entities, relations, facts, multi-hop chains.

Usage::

    from corredit.world.generate import generate_graph
    from corredit.world.options import WorldOptions
    g = generate_graph(WorldOptions(n_people=20))
    f = g.facts[0]            # Fact(subject='Toma Velik', relation='born_in', object='Belun')
    g.object_of(f.subject, "born_in")    # 'Belun'
    g.follow(f.subject, ("born_in", "located_in"))   # the country of the birth city
    g.subjects_with("born_in", "Belun")  # everybody born there
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from corredit.world.schema import Chain, Relation

__all__ = ["Fact", "KnowledgeGraph"]


@dataclass(frozen=True)
class Fact:
    """``(subject, relation, object)``; ``relation`` is a relation id."""

    subject: str
    relation: str
    object: str


class KnowledgeGraph:
    """Entities by type, relations, facts (one object per subject and relation), chains."""

    def __init__(self, entities: Mapping[str, Iterable[str]], relations: Iterable[Relation],
                 facts: Iterable[Fact], chains: Iterable[Chain] = (),
                 source: str = "world") -> None:
        self.entities: dict[str, tuple[str, ...]] = {t: tuple(v) for t, v in entities.items()}
        self.relations: dict[str, Relation] = {r.id: r for r in relations}
        self.facts: tuple[Fact, ...] = tuple(facts)
        self.chains: tuple[Chain, ...] = tuple(chains)
        self._type: dict[str, str] = {}
        for t, names in self.entities.items():
            for n in names:
                if n in self._type:
                    raise ValueError(f"{source}: entity {n!r} is both a {self._type[n]} and a {t}")
                self._type[n] = t
        self._obj: dict[tuple[str, str], str] = {}
        self._subj: dict[tuple[str, str], list[str]] = {}
        for i, f in enumerate(self.facts):
            rel = self.relations.get(f.relation)
            where = f"{source}: facts[{i}]"
            if rel is None:
                raise ValueError(f"{where}: unknown relation {f.relation!r}")
            if self._type.get(f.subject) != rel.subject_type:
                raise ValueError(f"{where}: subject {f.subject!r} is not a {rel.subject_type}")
            if self._type.get(f.object) != rel.object_type:
                raise ValueError(f"{where}: object {f.object!r} is not a {rel.object_type}")
            if (f.subject, f.relation) in self._obj:
                raise ValueError(f"{where}: second fact for ({f.subject!r}, {f.relation!r})")
            self._obj[(f.subject, f.relation)] = f.object
            self._subj.setdefault((f.relation, f.object), []).append(f.subject)
        for c in self.chains:
            for r in c.relations:
                if r not in self.relations:
                    raise ValueError(f"{source}: chain {c.template!r} names unknown relation {r!r}")

    def type_of(self, name: str) -> str:
        """The entity type of ``name``; KeyError when it is no entity."""
        try:
            return self._type[name]
        except KeyError:
            raise KeyError(f"{name!r} is no entity of this world") from None

    def object_of(self, subject: str, relation: str) -> str | None:
        """The object of ``(subject, relation)``, None when there is no such fact."""
        return self._obj.get((subject, relation))

    def follow(self, start: str, relations: Iterable[str]) -> str | None:
        """Follow a chain of relations from ``start``; None when a hop is missing."""
        node: str | None = start
        for r in relations:
            if node is None:
                return None
            node = self._obj.get((node, r))
        return node

    def subjects_with(self, relation: str, obj: str) -> tuple[str, ...]:
        """Subjects whose ``relation`` points at ``obj``, in fact order."""
        return tuple(self._subj.get((relation, obj), ()))

    def facts_of(self, subject: str) -> tuple[Fact, ...]:
        """The facts whose subject is ``subject``, in fact order."""
        return tuple(f for f in self.facts if f.subject == subject)

    @property
    def subjects(self) -> tuple[str, ...]:
        """Distinct subjects of facts, in order of first appearance."""
        return tuple(dict.fromkeys(f.subject for f in self.facts))

    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": {t: list(v) for t, v in self.entities.items()},
            "relations": [r.to_dict() for r in self.relations.values()],
            "chains": [c.to_dict() for c in self.chains],
            "facts": [[f.subject, f.relation, f.object] for f in self.facts],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "world") -> "KnowledgeGraph":
        """Inverse of :meth:`to_dict`; errors name ``source`` and the field."""
        for key in ("entities", "relations", "facts"):
            if key not in d:
                raise ValueError(f"{source}: missing field {key!r}")
        facts = []
        for i, row in enumerate(d["facts"]):
            if not (isinstance(row, (list, tuple)) and len(row) == 3):
                raise ValueError(f"{source}: facts[{i}] must be [subject, relation, object]")
            facts.append(Fact(*map(str, row)))
        try:
            relations = [Relation.from_dict(r) for r in d["relations"]]
            chains = [Chain.from_dict(c) for c in d.get("chains", ())]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source}: malformed relations/chains ({exc})") from None
        return cls(d["entities"], relations, facts, chains, source=source)
