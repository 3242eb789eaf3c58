"""MEMIT-Merge: facts of a batch that share a key get one value, optimised for all their
targets at once.

Usage::

    from corredit.editors import get_editor
    from corredit.editors.memit_merge import merge_groups
    ed = get_editor("memit-merge")({"layers": [2, 3]})
    res = ed.apply(h, requests, stats=moments, seed=0)
    res.diagnostics["merge_groups"]          # [[0, 3], [1], [2]]: indices into requests
    merge_groups(requests)                   # the "prefix" rule alone

MEMIT writes one column per fact; facts whose keys coincide (same subject, same text
before it) then ask one key for several values, and the solve averages them. Here each
group (rule: :class:`~corredit.editors.hparams.MemitMergeHParams`) becomes one
:class:`~corredit.editors.values.ValueUnit` whose rewrites hold every member's
(templated prompt, target) pairs, so one vector is optimised for all the group's targets,
and the solve gets one column per group, keyed at the group's first request. With no two
facts grouped it is MEMIT.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from corredit.editors.base import register_editor
from corredit.editors.hparams import MemitMergeHParams
from corredit.editors.keys import KeyReader, fill_template
from corredit.editors.memit import MEMIT
from corredit.editors.templates import flatten_groups
from corredit.editors.values import ValueUnit

__all__ = ["MEMITMerge", "merge_groups", "merged_units"]


def _prefix(request) -> str:
    return request.prompt.split("{}", 1)[0] + request.subject


def merge_groups(requests: Sequence, keys: torch.Tensor | None = None, *, tol: float = 1e-6
                 ) -> list[list[int]]:
    """Indices of ``requests`` grouped in order of first appearance: by the rewrite prompt's
    text up to and including the subject, or, when ``keys`` (n, d_k) are given, by keys
    within relative distance ``tol`` of a group's first key."""
    groups: list[list[int]] = []
    if keys is None:
        where: dict[str, int] = {}
        for i, r in enumerate(requests):
            g = where.setdefault(_prefix(r), len(groups))
            if g == len(groups):
                groups.append([])
            groups[g].append(i)
        return groups
    keys = keys.to(torch.float64)
    norms = keys.norm(dim=1)
    for i in range(len(requests)):
        for g in groups:
            j = g[0]
            scale = float(torch.maximum(norms[i], norms[j]).clamp(min=1e-30))
            if float((keys[i] - keys[j]).norm()) <= tol * scale:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def merged_units(requests: Sequence, groups: Sequence[Sequence[int]], templates: Sequence[str],
                 *, kl_prompt: str = "{} is a") -> list[ValueUnit]:
    """One unit per group: every member's templated rewrites (the first member's bare
    prompt first, which sets ``v0``) and every distinct member subject's KL prompt; a
    single-member group's unit is :func:`~corredit.editors.values.units_from_requests`'."""
    units = []
    for g in groups:
        members = [requests[i] for i in g]
        rew = tuple((fill_template(t, r.rewrite_prompt), r.target_new)
                    for r in members for t in templates)
        kl = tuple(dict.fromkeys(kl_prompt.replace("{}", r.subject, 1) for r in members))
        units.append(ValueUnit("+".join(str(r.case_id) for r in members), members[0].subject,
                               rew, kl))
    return units


@register_editor("memit-merge")
class MEMITMerge(MEMIT):
    """MEMIT with one merged value per group of coinciding keys; see the module docstring.
    Its values depend on the batch's grouping, so they are not precomputed across batches."""

    hparams_class = MemitMergeHParams
    _pending_groups_: list[list[int]] | None = None

    @property
    def precomputes_values(self) -> bool:
        return False

    def groups_for(self, h, requests: list, hp: MemitMergeHParams, seed: int) -> list[list[int]]:
        """The merge groups of a batch on the current model (indices into ``requests``)."""
        if hp.merge_rule == "prefix":
            return merge_groups(requests)
        from corredit.models import Site

        site = Site("mlp_out", hp.layers[0], "input")
        reader = KeyReader(h, requests, self._groups(h, hp, seed),
                           max_batch_tokens=self.max_batch_tokens)
        keys = reader.average(reader.read([site])[site], hp.key_averaging)
        return merge_groups(requests, keys, tol=hp.merge_key_tol)

    def _units(self, h, requests: list, hp: MemitMergeHParams, seed: int
               ) -> tuple[list[ValueUnit], list]:
        groups = self._pending_groups_ or self.groups_for(h, requests, hp, seed)
        templates = flatten_groups(self._groups(h, hp, seed))
        units = merged_units(requests, groups, templates, kl_prompt=hp.kl_prompt)
        return units, [requests[g[0]] for g in groups]

    def _edit(self, h, requests: list, hp: MemitMergeHParams, *, stats, seed: int,
              precomputed=None) -> dict[str, Any]:
        groups = self.groups_for(h, requests, hp, seed)
        self._pending_groups_ = groups          # one grouping for the values and the keys
        try:
            diag = super()._edit(h, requests, hp, stats=stats, seed=seed,
                                 precomputed=precomputed)
        finally:
            self._pending_groups_ = None
        diag["merge_groups"] = groups
        return diag
