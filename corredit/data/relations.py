"""Relations for CounterFact records that carry none, inferred from prompt templates.

Usage::

    from corredit.data.relations import RelationTable, TemplateMatcher, infer_counterfact_relations
    table = RelationTable.counterfact()
    table.by_template["The mother tongue of {} is"]     # ('P103',)
    table.by_template["{} is located in"]               # ('P131', 'P17', 'P276', 'P30')
    TemplateMatcher(["{} is a native speaker of"]).match("Michel Rocard is a native speaker of")

CounterFact's prompts come from ParaRel templates, several per relation, and some
templates serve several relations ("{} is located in": country, continent,
administrative entity, location). The flattened layout keeps the prompt and drops the
relation id, so :func:`infer_counterfact_relations` recovers it per record, in order:

1. ``template``: the record's template (prompt with the subject replaced by ``{}``)
   belongs to one relation of the table (``counterfact_relations.json``);
2. ``neighbourhood``: the neighbourhood prompt is about another subject with the same
   relation, so its template's relations narrow the candidates to one;
3. ``objects``: among the remaining candidates, the relation whose records resolved by
   steps 1-2 (in the same load) most often have this record's true, then new, object;
4. ``unseen_object``: when no candidate has shown these objects, the one whose resolved
   records hold the most objects seen only once (the likeliest to hold one not seen
   yet: administrative regions rather than the handful of continents).

Records whose template the table does not know fall back to template clusters: templates
linked through neighbourhood prompts form one relation, named ``template:<the cluster's
most frequent template>``. Every record's ``meta`` says how its relation was found
(``relation_inferred_by``) and, when its template serves several relations, lists them
(``relation_candidates``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
import json
from typing import Any

from corredit.types import EditRequest

__all__ = ["RelationTable", "TemplateMatcher", "infer_counterfact_relations", "unescape"]

_TABLE_FILE = "counterfact_relations.json"


def unescape(template_part: str) -> str:
    """Literal text of a piece of template (``{{``/``}}`` back to braces)."""
    return template_part.replace("{{", "{").replace("}}", "}")


def _relation_sort_key(rel: str) -> tuple[int, str]:
    return (int(rel[1:]), rel) if rel[:1] == "P" and rel[1:].isdigit() else (1 << 30, rel)


@dataclass(frozen=True)
class RelationTable:
    """Relation labels and, for each known template, the relations that use it."""

    labels: Mapping[str, str]
    by_template: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RelationTable":
        """From ``{"relations": {id: {"label": ..., "templates": [...]}}}``."""
        labels: dict[str, str] = {}
        by_template: dict[str, list[str]] = defaultdict(list)
        for rel, entry in d["relations"].items():
            labels[rel] = entry.get("label", rel)
            for t in entry["templates"]:
                by_template[t].append(rel)
        return cls(labels, {t: tuple(sorted(rs, key=_relation_sort_key))
                            for t, rs in by_template.items()})

    @classmethod
    def counterfact(cls) -> "RelationTable":
        """The table of CounterFact's 34 relations shipped with corredit."""
        text = resources.files("corredit.data").joinpath(_TABLE_FILE).read_text("utf-8")
        return cls.from_dict(json.loads(text))


class TemplateMatcher:
    """Finds the most specific template (longest fixed text) that a full prompt fits."""

    _KEYS = (12, 6, 3, 0)  # templates are filed under the longest suffix tail they have

    def __init__(self, templates: Iterable[str]) -> None:
        self._by_key: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for t in set(templates):
            if "{}" not in t:
                continue
            prefix, suffix = (unescape(x) for x in t.split("{}", 1))
            n = next(k for k in self._KEYS if len(suffix) >= k)
            self._by_key[suffix[len(suffix) - n:]].append((t, prefix, suffix))
        for entries in self._by_key.values():  # most specific first, then by name
            entries.sort(key=lambda e: (-(len(e[1]) + len(e[2])), e[0]))

    def match(self, prompt: str) -> str | None:
        """The template ``prompt`` fits (with a non-blank subject), or None."""
        best: tuple[int, str] | None = None
        for k in self._KEYS:
            entries = self._by_key.get(prompt[len(prompt) - k:] if k else "")
            if not entries or len(prompt) < k:
                continue
            for t, prefix, suffix in entries:
                n = len(prefix) + len(suffix)
                if best is not None and n < best[0]:
                    break
                if (len(prompt) > n and prompt.startswith(prefix) and prompt.endswith(suffix)
                        and prompt[len(prefix):len(prompt) - len(suffix)].strip()):
                    if best is None or (-n, t) < (-best[0], best[1]):
                        best = (n, t)
                    break  # entries are sorted: the first fit is this bucket's best
        return None if best is None else best[1]


def _neighbour_text(req: EditRequest) -> str | None:
    if req.neighborhood_prompts:
        return req.neighborhood_prompts[0]
    if req.locality:
        return req.locality[0].prompt
    return None


class _Clusters:
    """Union-find over templates."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def infer_counterfact_relations(
    requests: list[EditRequest], options: Mapping[str, Any] | None = None, *,
    table: RelationTable | None = None,
) -> tuple[list[EditRequest], dict[str, Any]]:
    """``requests`` with ``relation_id`` set from ``meta["template"]`` (see the module doc),
    and a summary: ``n_templates``, ``n_relations``, ``relation_inferred_by`` counts,
    ``n_unknown_templates``."""
    table = table or RelationTable.counterfact()
    templates = [r.meta["template"] for r in requests]
    counts = Counter(templates)
    matcher = TemplateMatcher(set(table.by_template) | set(counts))
    known = table.by_template

    # per record: (relation or None, neighbourhood template, candidates left, the
    # template's own candidates, how)
    decided: list[tuple[str | None, str | None, tuple[str, ...], tuple[str, ...], str]] = []
    clusters = _Clusters()
    for req, t in zip(requests, templates):
        neighbour = _neighbour_text(req)
        lt = matcher.match(neighbour) if neighbour else None
        cands_t, cands_l = known.get(t), known.get(lt) if lt else None
        if cands_t:
            both = tuple(c for c in cands_t if cands_l and c in cands_l)
            cands = cands_t if len(cands_t) == 1 or not both else both
            how = "template" if len(cands_t) == 1 else "neighbourhood"
            offered = cands_t
        elif cands_l:
            cands, how, offered = cands_l, "neighbourhood", cands_l
        else:
            if lt:
                clusters.union(t, lt)
            else:
                clusters.find(t)
            decided.append((None, lt, (), (), "cluster"))
            continue
        rel = cands[0] if len(cands) == 1 else None
        decided.append((rel, lt, cands, offered, how if rel else "pending"))

    votes: dict[str, Counter] = defaultdict(Counter)
    true_objects: dict[str, Counter] = defaultdict(Counter)
    for req, (rel, *_) in zip(requests, decided):
        if rel is not None:
            votes[rel][(req.target_true or "").casefold()] += 1
            votes[rel][req.target_new.casefold()] += 1
            true_objects[rel][(req.target_true or "").casefold()] += 1
    # objects seen once: how likely a relation is to show an object not seen yet
    once = {rel: sum(1 for n in objs.values() if n == 1) for rel, objs in true_objects.items()}

    members: dict[str, list[str]] = defaultdict(list)
    for t in counts:
        if t in clusters.parent:
            members[clusters.find(t)].append(t)
    cluster_name = {root: "template:" + min(ts, key=lambda x: (-counts[x], x))
                    for root, ts in members.items()}

    out: list[EditRequest] = []
    how_counts: Counter = Counter()
    for req, t, (rel, lt, cands, offered, how) in zip(requests, templates, decided):
        if how == "cluster":
            rel = cluster_name[clusters.find(t)]
        elif how == "pending":
            tt, tn = (req.target_true or "").casefold(), req.target_new.casefold()
            rel = max(cands, key=lambda c: (votes[c][tt], votes[c][tn], once.get(c, 0),
                                            sum(true_objects[c].values())))
            how = "objects" if votes[rel][tt] or votes[rel][tn] else "unseen_object"
        how_counts[how] += 1
        meta = dict(req.meta)
        meta["template"] = t
        if lt is not None:
            meta["neighbourhood_template"] = lt
        meta["relation_inferred_by"] = how
        if len(offered) > 1:
            meta["relation_candidates"] = list(offered)
        if rel in table.labels:
            meta["relation_label"] = table.labels[rel]
        out.append(replace(req, relation_id=rel, meta=meta))
    info = {
        "n_templates": len(counts),
        "n_relations": len({r.relation_id for r in out}),
        "n_unknown_templates": sum(1 for t in counts if t not in known),
        "relation_inferred_by": {k: how_counts[k] for k in
                                 ("template", "neighbourhood", "objects", "unseen_object",
                                  "cluster")
                                 if how_counts[k]},
    }
    return out, info
