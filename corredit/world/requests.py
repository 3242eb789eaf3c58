"""Edit requests exported from a knowledge graph.

Usage::

    from corredit.world.requests import make_requests
    reqs = make_requests(graph, relations=["born_in"], subject_first=True, n=50, seed=0)
    r = reqs[0]
    r.rewrite_prompt, r.target_true, r.target_new     # ('Toma Velik was born in', 'Belun', 'Korin')
    r.meta["phrasing"], r.meta["subject_first"]         # (0, True)

One request per fact (case id = the fact's index in the world). The rewrite phrasing and
the new target (an object of the same type, never the true one) are drawn per case from
``seed`` and the case id, so filtering never changes the draws of the cases kept.
Paraphrase prompts are the fact's other phrasings; neighbourhood prompts put other subjects
with the same relation and true object into the rewrite phrasing; locality prompts are the
subject's other, independent facts in a phrasing of the same kind (subject first or last);
multi-hop questions follow the graph from the true and from the new object.
"""

from __future__ import annotations

import random
from typing import Iterable

from corredit.types import EditRequest, LocalityPrompt, MultiHopQuestion
from corredit.world.graph import Fact, KnowledgeGraph
from corredit.world.schema import DEPENDENT_GROUPS

__all__ = ["make_requests", "request_for_fact", "distinct_subjects"]


def _dependent(relation: str) -> set[str]:
    out = {relation}
    for group in DEPENDENT_GROUPS:
        if relation in group:
            out.update(group)
    return out


def request_for_fact(graph: KnowledgeGraph, index: int, *, seed: int = 0,
                     subject_first: bool | None = None, phrasing: int | None = None,
                     n_neighbors: int = 10) -> EditRequest | None:
    """The edit request of fact ``index``; None when no phrasing fits the filters."""
    fact: Fact = graph.facts[index]
    rel = graph.relations[fact.relation]
    candidates = list(range(len(rel.phrasings)))
    if subject_first is True:
        candidates = list(rel.subject_first_indices)
    elif subject_first is False:
        candidates = list(rel.subject_last_indices)
    if phrasing is not None:
        candidates = [i for i in candidates if i == phrasing]
    if not candidates:
        return None
    rng = random.Random(f"corredit-world-request:{seed}:{index}")
    k = rng.choice(candidates)
    template = rel.phrasings[k]
    first = k in rel.subject_first_indices
    pool = [x for x in graph.entities[rel.object_type] if x != fact.object]
    if not pool:
        raise ValueError(f"relation {rel.id!r}: only one {rel.object_type}, no new target to draw")
    target_new = rng.choice(pool)

    paraphrases = tuple(p.format(fact.subject) for i, p in enumerate(rel.phrasings) if i != k)
    others = [s for s in graph.subjects_with(fact.relation, fact.object) if s != fact.subject]
    if len(others) > n_neighbors:
        keep = set(rng.sample(range(len(others)), n_neighbors))
        others = [s for i, s in enumerate(others) if i in keep]
    neighborhood = tuple(template.format(s) for s in others)

    same_kind = rel.subject_first_indices if first else rel.subject_last_indices
    position = same_kind.index(k)
    locality = []
    skip = _dependent(fact.relation)
    for g in graph.facts_of(fact.subject):
        if g.relation in skip:
            continue
        grel = graph.relations[g.relation]
        kinds = grel.subject_first_indices if first else grel.subject_last_indices
        if kinds:
            tpl = grel.phrasings[kinds[position % len(kinds)]]
            locality.append(LocalityPrompt(tpl.format(g.subject), g.object))

    multi_hop = []
    for chain in graph.chains:
        if chain.relations[0] != fact.relation:
            continue
        answer = graph.follow(fact.object, chain.relations[1:])
        new_answer = graph.follow(target_new, chain.relations[1:])
        if answer is not None and new_answer is not None:
            multi_hop.append(MultiHopQuestion(chain.template.format(fact.subject),
                                              answer, new_answer))

    generation = tuple(rel.phrasings[i].format(fact.subject) for i in rel.subject_first_indices)
    generation += (f"{fact.subject} is",)
    return EditRequest(
        case_id=str(index),
        subject=fact.subject,
        relation_id=fact.relation,
        prompt=template,
        target_new=target_new,
        target_true=fact.object,
        paraphrase_prompts=paraphrases,
        neighborhood_prompts=neighborhood,
        generation_prompts=generation,
        locality=tuple(locality),
        multi_hop=tuple(multi_hop),
        meta={
            "source": "world",
            "fact_index": index,
            "phrasing": k,
            "subject_first": first,
            "subject_type": rel.subject_type,
            "object_type": rel.object_type,
            "n_subject_facts": len(graph.facts_of(fact.subject)),
        },
    )


def make_requests(graph: KnowledgeGraph, *, relations: Iterable[str] | str | None = None,
                  subject_first: bool | None = None, phrasing: int | None = None,
                  subjects: Iterable[str] | str | None = None, n: int | None = None,
                  seed: int = 0, n_neighbors: int = 10) -> list[EditRequest]:
    """Edit requests of the facts that pass the filters, in fact order.

    ``relations``: relation ids to keep; ``subject_first``: True keeps subject-first
    phrasings only, False subject-last only; ``phrasing``: one phrasing index;
    ``subjects``: subjects to keep; ``n``: a seeded sample of that many requests.
    """
    rel_set: set[str] | None = None
    if relations is not None:
        rel_set = set(_sequence(relations))
        unknown = sorted(rel_set - set(graph.relations))
        if unknown:
            raise KeyError(f"unknown relation id(s) {unknown}; known: {sorted(graph.relations)}")
    subj_set = set(_sequence(subjects)) if subjects is not None else None
    out: list[EditRequest] = []
    for i, f in enumerate(graph.facts):
        if rel_set is not None and f.relation not in rel_set:
            continue
        if subj_set is not None and f.subject not in subj_set:
            continue
        req = request_for_fact(graph, i, seed=seed, subject_first=subject_first,
                               phrasing=phrasing, n_neighbors=n_neighbors)
        if req is not None:
            out.append(req)
    if n is not None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n < len(out):
            keep = sorted(random.Random(f"corredit-world-sample:{seed}").sample(range(len(out)), n))
            out = [out[i] for i in keep]
    return out


def _sequence(x: Iterable[str] | str) -> tuple[str, ...]:
    return (x,) if isinstance(x, str) else tuple(x)


def distinct_subjects(requests: Iterable[EditRequest], n: int | None = None, *,
                      seed: int | None = None) -> list[EditRequest]:
    """The first request of each subject (at most ``n``), after a seeded shuffle when
    ``seed`` is given: a batch in which no two edits share a subject.

    Example: ``distinct_subjects(world.requests(seed=0), 64, seed=0)``.
    """
    pool = list(requests)
    if seed is not None:
        random.Random(f"distinct-subjects:{seed}").shuffle(pool)
    seen: set[str] = set()
    out = []
    for r in pool:
        if r.subject not in seen:
            seen.add(r.subject)
            out.append(r)
    return out if n is None else out[:n]
