"""Subject-token keys and hidden states, averaged over context templates.

Usage::

    from corredit.editors.keys import KeyReader
    reader = KeyReader(h, requests, groups)                  # groups from TemplateSampler
    out = reader.read([Site("mlp_out", 3, "input"), Site("block", 5, "output")])
    k_avg = reader.average(out[Site("mlp_out", 3, "input")], "two_level")   # (n, d_k)
    h_bare = reader.bare(out[Site("block", 5, "output")])                     # (n, d)

Every row is a template applied to a request's rewrite prompt; values are read at the
subject's last token, in one traced pass per chunk, stopping after the highest layer read.
"""

from __future__ import annotations

from typing import Sequence

import torch

from corredit.editors.sequences import pack, prompt_ids, subject_position, token_chunks
from corredit.editors.templates import flatten_groups

__all__ = ["KeyReader", "fill_template"]


def fill_template(template: str, text: str) -> str:
    """``template`` with its single ``{}`` replaced by ``text`` (braces in ``text`` kept)."""
    return template.replace("{}", text, 1)


class KeyReader:
    """Reads hidden values at the subject's last token of every (request, template)."""

    def __init__(self, h, requests: Sequence, groups: Sequence[Sequence[str]], *,
                 max_batch_tokens: int = 16384) -> None:
        self.h = h
        self.groups = tuple(tuple(g) for g in groups)
        self.templates = flatten_groups(self.groups)
        self.n_requests = len(requests)
        self.max_batch_tokens = max_batch_tokens
        tok = h.tokenizer
        self.rows: list[list[int]] = []
        self.positions: list[int] = []
        for req in requests:
            for t in self.templates:
                text = fill_template(t, req.rewrite_prompt)
                self.rows.append(prompt_ids(tok, text))
                self.positions.append(subject_position(tok, text, req.subject, case_id=req.case_id))

    @torch.no_grad()
    def read(self, sites: Sequence) -> dict:
        """``{site: Tensor(n_requests, n_templates, dim)}`` in float64 on the model's device."""
        from corredit.models import trace

        stop = max(s.layer for s in sites)
        chunks: dict = {s: [] for s in sites}
        for idx in token_chunks([len(r) for r in self.rows], self.max_batch_tokens):
            batch = pack([self.rows[i] for i in idx], pad_id=self.h.tokenizer.pad_token_id,
                         device=self.h.device)
            res = trace(self.h, batch.input_ids, attention_mask=batch.attention_mask,
                        read=list(sites), stop_at_layer=stop)
            pos = torch.tensor([self.positions[i] for i in idx], device=batch.input_ids.device)
            rows = torch.arange(len(idx), device=pos.device)
            for s in sites:
                chunks[s].append((idx, res.values[s][rows, pos].double()))
        out = {}
        n_t = len(self.templates)
        for s in sites:
            dim = chunks[s][0][1].shape[-1]
            full = torch.empty(len(self.rows), dim, dtype=torch.float64, device=chunks[s][0][1].device)
            for idx, vals in chunks[s]:
                full[torch.tensor(idx, device=full.device)] = vals
            out[s] = full.view(self.n_requests, n_t, dim)
        return out

    def average(self, values: torch.Tensor, mode: str) -> torch.Tensor:
        """Mean over templates: ``"flat"`` (all templates alike) or ``"two_level"``
        (mean over groups of the within-group means)."""
        if mode == "flat":
            return values.mean(1)
        if mode == "two_level":
            means, start = [], 0
            for g in self.groups:
                means.append(values[:, start:start + len(g)].mean(1))
                start += len(g)
            return torch.stack(means, 0).mean(0)
        raise ValueError(f"unknown key averaging {mode!r}; known: flat, two_level")

    def bare(self, values: torch.Tensor) -> torch.Tensor:
        """The value of the bare template ``"{}"`` (group 0)."""
        return values[:, 0]
