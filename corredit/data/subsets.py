"""Correlated subsets of any edit set: facts that share a subject, a relation or an object,
and conflicting pairs.

Usage::

    from corredit.data import load_dataset
    from corredit.data.subsets import (same_subject_sets, shared_relation_sets,
        shared_object_sets, conflict_pairs, take_sets, counterfactual_targets)
    reqs = load_dataset("counterfact-edit.json").requests
    by_subject = same_subject_sets(reqs, min_facts=2)   # {subject: [requests]}
    by_relation = shared_relation_sets(reqs)            # {relation_id: [requests]}
    by_new = shared_object_sets(reqs, which="new")      # {object: [requests]}
    pairs = conflict_pairs(reqs)                        # [(a, b), ...]
    batch = take_sets(by_subject, n_sets=50, seed=0)    # 50 whole subject sets, flattened

Sets keep the input order of their requests and are ordered by first appearance.
Subjects and relations are compared exactly; objects (targets) ignoring case and outer
whitespace, so "Paris" and "paris " are one object.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
import random

from corredit.types import EditRequest

__all__ = [
    "same_subject_sets", "shared_relation_sets", "shared_object_sets", "conflict_pairs",
    "take_sets", "counterfactual_targets", "object_key",
]


def object_key(target: str) -> str:
    """The form under which two targets count as the same object."""
    return target.strip().casefold()


def _group(requests: Iterable[EditRequest], key: Callable[[EditRequest], str | None],
           min_size: int) -> dict[str, list[EditRequest]]:
    if min_size < 1:
        raise ValueError(f"the smallest set size must be at least 1, got {min_size}")
    groups: dict[str, list[EditRequest]] = defaultdict(list)
    for r in requests:
        k = key(r)
        if k is not None:
            groups[k].append(r)
    return {k: v for k, v in groups.items() if len(v) >= min_size}


def same_subject_sets(requests: Iterable[EditRequest], min_facts: int = 2
                      ) -> dict[str, list[EditRequest]]:
    """All facts of each subject that carries at least ``min_facts`` of them."""
    return _group(requests, lambda r: r.subject, min_facts)


def shared_relation_sets(requests: Iterable[EditRequest], min_size: int = 2
                         ) -> dict[str, list[EditRequest]]:
    """The facts of each relation that at least ``min_size`` facts share."""
    return _group(requests, lambda r: r.relation_id, min_size)


def shared_object_sets(requests: Iterable[EditRequest], which: str = "new",
                       min_size: int = 2) -> dict[str, list[EditRequest]]:
    """Facts sharing their new (``which="new"``) or true (``"true"``) object; keyed by
    :func:`object_key`. Requests without a true target have no true object."""
    if which == "new":
        return _group(requests, lambda r: object_key(r.target_new), min_size)
    if which == "true":
        return _group(requests, lambda r: None if r.target_true is None
                      else object_key(r.target_true), min_size)
    raise ValueError(f"which must be 'new' or 'true', got {which!r}")


def conflict_pairs(requests: Iterable[EditRequest]) -> list[tuple[EditRequest, EditRequest]]:
    """Pairs of requests with the same subject and relation but different new targets,
    each pair in input order."""
    groups = _group(requests, lambda r: f"{r.relation_id}\0{r.subject}", 2)
    pairs = []
    for members in groups.values():
        for i, a in enumerate(members):
            ka = object_key(a.target_new)
            for b in members[i + 1:]:
                if object_key(b.target_new) != ka:
                    pairs.append((a, b))
    return pairs


def take_sets(sets: Mapping[str, Sequence[EditRequest]], n_sets: int | None = None,
              seed: int = 0) -> list[EditRequest]:
    """The requests of ``n_sets`` sets drawn at random with ``seed`` (all sets, in order,
    when ``n_sets`` is None), flattened set after set."""
    keys = list(sets)
    if n_sets is not None:
        if not 0 <= n_sets <= len(keys):
            raise ValueError(f"n_sets must be between 0 and {len(keys)}, got {n_sets}")
        keys = random.Random(seed).sample(keys, n_sets)
    return [r for k in keys for r in sets[k]]


def counterfactual_targets(requests: Sequence[EditRequest], seed: int = 0) -> list[EditRequest]:
    """Turn true facts (no ``target_true``) into counterfactual edits, CounterFact-style:
    the fact's object becomes ``target_true`` and ``target_new`` is drawn (with ``seed``)
    from the other objects of the same relation in ``requests``. Requests that already
    have a true target are returned unchanged. Raises ValueError naming the requests whose
    relation has no other object."""
    pools: dict[str, dict[str, str]] = defaultdict(dict)
    for r in requests:
        pools[r.relation_id].setdefault(object_key(r.target_new), r.target_new)
    rng = random.Random(seed)
    out, stuck = [], []
    for r in requests:
        if r.target_true is not None:
            out.append(r)
            continue
        own = object_key(r.target_new)
        choices = sorted(v for k, v in pools[r.relation_id].items() if k != own)
        if not choices:
            stuck.append(r.case_id)
            continue
        meta = dict(r.meta, counterfactual_seed=seed)
        out.append(replace(r, target_true=r.target_new, target_new=rng.choice(choices),
                           meta=meta))
    if stuck:
        raise ValueError(f"{len(stuck)} request(s) have no other object of their relation to "
                         f"draw a new target from: case ids {stuck[:10]}")
    return out
