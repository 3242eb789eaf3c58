"""Texts rendered from a knowledge graph: training corpus, statistics corpus, held-out
texts and reference snippets.

Usage::

    from corredit.world.corpus import render_corpus
    texts = render_corpus(graph, seed=0)
    texts.training[0]          # 'Toma Velik was born in Belun.'
    texts.snippets["Belun"]    # ('Belun is a city in Velmar.', 'Toma Velik was born in Belun.')

* training: every fact in every phrasing (one sentence each), short multi-fact biographies
  (two per text, so that texts span the model's positions) and place descriptions;
* stats: the same knowledge arranged differently (paragraphs of shuffled fact sentences,
  single biographies, place descriptions), for second-moment statistics;
* heldout: biographies and descriptions in frames the training corpus never uses, for
  perplexity;
* snippets: for every object, short sentences about it (its own facts and the facts that
  point at it), the references of the reference score.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping

from corredit.world.graph import Fact, KnowledgeGraph

__all__ = ["Corpus", "render_corpus", "render_fact", "FRAME_TEXT"]

_TRAIN_BIOS = (
    "{p} was born in {city}, a city in {country}. {p} works as a {occ} for {comp}. "
    "{p} plays the {inst} and speaks {lang}.",
    "{p} is a {occ} from {city}. {p} is a citizen of {country} and grew up speaking {lang}. "
    "{p} is employed by {comp} and plays the {inst}.",
    "Born in {city}, {p} is a citizen of {country}. {p} earns a living as a {occ} at {comp}, "
    "speaks {lang} and plays the {inst}.",
)
_HELDOUT_BIOS = (
    "{p} grew up in {city} in {country}, speaking {lang}. Today {p} works for {comp} as a "
    "{occ} and plays the {inst}.",
    "As a {occ}, {p} works for {comp}. {p} comes from {city} and holds a passport from "
    "{country}. {p} plays the {inst}.",
)
_TRAIN_COUNTRY = ("{country} is a country whose capital is {capital} and whose official "
                  "language is {lang}. The cities of {country} include {cities}.")
_HELDOUT_COUNTRY = "In {country}, people speak {lang}, and the seat of government is {capital}."
_TRAIN_COMPANY = "{comp} is a company based in {city}, a city in {country}."
_HELDOUT_COMPANY = "The firm {comp} has offices in {city}, {country}."

#: All frame words, so that invented names avoid them.
FRAME_TEXT = " ".join(_TRAIN_BIOS + _HELDOUT_BIOS + (
    _TRAIN_COUNTRY, _HELDOUT_COUNTRY, _TRAIN_COMPANY, _HELDOUT_COMPANY))


@dataclass(frozen=True)
class Corpus:
    """The rendered texts of a world."""

    training: tuple[str, ...]
    stats: tuple[str, ...]
    heldout: tuple[str, ...]
    snippets: Mapping[str, tuple[str, ...]]


def render_fact(graph: KnowledgeGraph, fact: Fact, phrasing: int) -> str:
    """``fact`` as a sentence in phrasing number ``phrasing`` of its relation."""
    template = graph.relations[fact.relation].phrasings[phrasing]
    return f"{template.format(fact.subject)} {fact.object}."


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _person_fields(graph: KnowledgeGraph, p: str) -> dict[str, str]:
    o = graph.object_of
    return {"p": p, "city": o(p, "born_in"), "country": o(p, "citizen_of"),
            "occ": o(p, "occupation"), "comp": o(p, "employer"), "inst": o(p, "plays"),
            "lang": o(p, "native_language")}


def _place_texts(graph: KnowledgeGraph, country_frame: str, company_frame: str) -> list[str]:
    out = []
    for c in graph.entities.get("country", ()):
        cities = [x for x in graph.subjects_with("located_in", c)]
        out.append(country_frame.format(country=c, capital=graph.object_of(c, "capital"),
                                        lang=graph.object_of(c, "official_language"),
                                        cities=_join(cities) if cities else "none"))
    for comp in graph.entities.get("company", ()):
        city = graph.object_of(comp, "headquartered_in")
        out.append(company_frame.format(comp=comp, city=city,
                                        country=graph.object_of(city, "located_in")))
    return out


def _snippets(graph: KnowledgeGraph) -> dict[str, tuple[str, ...]]:
    objects = dict.fromkeys(f.object for f in graph.facts)
    about: dict[str, list[str]] = {o: [] for o in objects}
    for f in graph.facts:
        sentence = render_fact(graph, f, 0)
        if f.subject in about:
            about[f.subject].append(sentence)
        about[f.object].append(sentence)
    return {o: tuple(dict.fromkeys(s)) for o, s in about.items()}


def _fact_list(graph: KnowledgeGraph, subject: str, rng: random.Random) -> str:
    """``subject`` named once, then all its facts in a random order and random
    subject-first phrasings: "X was born in A, works for B, ... and plays the C."."""
    facts = [f for f in graph.facts if f.subject == subject]
    rng.shuffle(facts)
    clauses = []
    for f in facts:
        rel = graph.relations[f.relation]
        template = rel.phrasings[rng.choice(rel.subject_first_indices)]
        clauses.append(f"{template.format('').strip()} {f.object}")
    return f"{subject} {_join(clauses)}."


def render_corpus(graph: KnowledgeGraph, seed: int = 0, place_repeat: int = 1,
                  fact_lists: int = 0) -> Corpus:
    """All texts of ``graph``; ``seed`` decides frame choices and orders.

    The training corpus holds the sentences of facts about places (subjects that are no
    person: cities, companies, countries) ``place_repeat`` times: there are few of them,
    and each is otherwise seen as rarely as one fact of one person. ``fact_lists`` texts per
    subject name it once and list all its facts in a random order, so that a fact is asked
    for at varying distances from the name.
    """
    rng = random.Random(seed)
    people = list(graph.entities.get("person", ()))
    person_ok = [p for p in people if all(graph.object_of(p, r) for r in
                                          ("born_in", "citizen_of", "occupation", "employer",
                                           "plays", "native_language"))]

    sentences = [render_fact(graph, f, i) for f in graph.facts
                 for i in range(len(graph.relations[f.relation].phrasings))]
    place_sentences = [render_fact(graph, f, i) for f in graph.facts
                       if graph.type_of(f.subject) != "person"
                       for i in range(len(graph.relations[f.relation].phrasings))]
    bios = [rng.choice(_TRAIN_BIOS).format(**_person_fields(graph, p)) for p in person_ok]
    paired = list(range(len(bios)))
    rng.shuffle(paired)
    bio_pairs = [" ".join(bios[j] for j in paired[i:i + 2]) for i in range(0, len(paired), 2)]
    places = _place_texts(graph, _TRAIN_COUNTRY, _TRAIN_COMPANY)
    training = tuple(sentences + place_sentences * (place_repeat - 1) + bio_pairs + places)
    if fact_lists:
        lrng = random.Random(f"fact-lists:{seed}")
        subjects = list(dict.fromkeys(f.subject for f in graph.facts))
        training += tuple(_fact_list(graph, s, lrng) for _ in range(fact_lists) for s in subjects)

    shuffled = list(sentences)
    rng.shuffle(shuffled)
    paragraphs = [" ".join(shuffled[i:i + 5]) for i in range(0, len(shuffled), 5)]
    stats = tuple(paragraphs + bios + places)

    held_bios = [rng.choice(_HELDOUT_BIOS).format(**_person_fields(graph, p)) for p in person_ok]
    heldout = tuple(held_bios + _place_texts(graph, _HELDOUT_COUNTRY, _HELDOUT_COMPANY))
    return Corpus(training=training, stats=stats, heldout=heldout, snippets=_snippets(graph))
