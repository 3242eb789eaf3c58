"""Seeded generation of a consistent knowledge graph.

Usage::

    from corredit.world.generate import generate_graph
    from corredit.world.options import WorldOptions
    g = generate_graph(WorldOptions(seed=1, n_people=50))
    len(g.facts)      # 6 per person + place facts

The world: countries, each with cities (one of them the capital) and an official language;
companies headquartered in cities; people born in a city, citizens of that city's country,
native speakers of that country's official language, with an occupation, an employer
(with probability ``local_employer_rate`` one headquartered in their country) and an
instrument. Chains such as person -> city -> country -> language give multi-hop questions.
"""

from __future__ import annotations

import random
import re

from corredit.world.graph import Fact, KnowledgeGraph
from corredit.world.names import NameFactory, person_names
from corredit.world.options import WorldOptions
from corredit.world.schema import CHAINS, INSTRUMENTS, OCCUPATIONS, RELATIONS

__all__ = ["generate_graph", "reserved_words"]

#: Relation order of a person's facts.
PERSON_RELATIONS = ("born_in", "citizen_of", "occupation", "employer", "plays", "native_language")


def reserved_words() -> set[str]:
    """Lower-case words that invented names must avoid (template and bio words, objects)."""
    from corredit.world.corpus import FRAME_TEXT

    text = " ".join(p for r in RELATIONS for p in r.phrasings)
    text += " " + " ".join(c.template for c in CHAINS) + " " + FRAME_TEXT
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}
    return words | set(OCCUPATIONS) | set(INSTRUMENTS)


def generate_graph(options: WorldOptions) -> KnowledgeGraph:
    """The knowledge graph that ``options`` (seed included) decide."""
    o = options
    if o.n_occupations > len(OCCUPATIONS):
        raise ValueError(f"n_occupations: at most {len(OCCUPATIONS)}, got {o.n_occupations}")
    if o.n_instruments > len(INSTRUMENTS):
        raise ValueError(f"n_instruments: at most {len(INSTRUMENTS)}, got {o.n_instruments}")
    if o.n_languages > o.n_countries:
        raise ValueError(f"n_languages ({o.n_languages}) must not exceed n_countries "
                         f"({o.n_countries}): every language is official somewhere")
    rng = random.Random(o.seed)
    names = NameFactory(random.Random(rng.getrandbits(64)), reserved=reserved_words())

    countries = [names.word() for _ in range(o.n_countries)]
    languages = [names.word() for _ in range(o.n_languages)]
    cities_of = {c: [names.word() for _ in range(o.cities_per_country)] for c in countries}
    cities = [city for c in countries for city in cities_of[c]]
    companies = [names.word() for _ in range(o.n_companies)]
    occupations = rng.sample(OCCUPATIONS, o.n_occupations)
    instruments = rng.sample(INSTRUMENTS, o.n_instruments)
    people = person_names(names, o.n_people, o.name_sharing, random.Random(rng.getrandbits(64)),
                          first_pool=o.first_names)

    # every language is official in at least one country; the others draw one
    extra = o.n_countries - o.n_languages
    official = list(languages) + [rng.choice(languages) for _ in range(extra)]
    rng.shuffle(official)
    language_of = dict(zip(countries, official))
    capital_of = {c: rng.choice(cities_of[c]) for c in countries}
    country_of = {city: c for c in countries for city in cities_of[c]}
    hq_of = {comp: rng.choice(cities) for comp in companies}
    companies_in = {c: [comp for comp in companies if country_of[hq_of[comp]] == c]
                    for c in countries}

    facts: list[Fact] = []
    for p in people:
        city = rng.choice(cities)
        country = country_of[city]
        local = companies_in[country]
        if local and rng.random() < o.local_employer_rate:
            employer = rng.choice(local)
        else:
            employer = rng.choice(companies)
        objects = {
            "born_in": city,
            "citizen_of": country,
            "occupation": rng.choice(occupations),
            "employer": employer,
            "plays": rng.choice(instruments),
            "native_language": language_of[country],
        }
        facts.extend(Fact(p, r, objects[r]) for r in PERSON_RELATIONS)
    facts.extend(Fact(city, "located_in", country_of[city]) for city in cities)
    facts.extend(Fact(comp, "headquartered_in", hq_of[comp]) for comp in companies)
    facts.extend(Fact(c, "capital", capital_of[c]) for c in countries)
    facts.extend(Fact(c, "official_language", language_of[c]) for c in countries)

    entities = {
        "country": countries, "language": languages, "city": cities, "company": companies,
        "occupation": occupations, "instrument": instruments, "person": people,
    }
    return KnowledgeGraph(entities, RELATIONS, facts, CHAINS)
