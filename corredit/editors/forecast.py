"""Interference forecast: what a MEMIT-family solve will leave unfit, computed before it runs.

Usage::

    from corredit.editors import forecast
    fc = forecast(h, requests, "memit", stats, batches=[[0, 1, 2], [3, 4]], seed=0)
    fc.unfit                    # (n,) predicted share of each edit's change left unfit
    fc.interferers[0]           # [("17", -0.31), ...]: strongest batch mates of edit 0
    edits, layers = fc.edit_frame(), fc.layer_frame()     # tidy tables
    fc = forecast(h, requests, ed, stats, values=ed.precompute_values(h, requests, stats=stats))
    fc.unfit_actual             # ||left_i|| / ||d_i|| with the optimised changes d_i
    keys = edit_keys(h, requests, "memit", seed=0)        # read once, forecast many batchings
    fc = forecast(h, requests, "memit", stats, batches=other_batches, keys=keys)

What is computed. At one layer MEMIT's update ``dW = R K^T (lam C + K K^T)^-1`` (``R``:
the changes, one column per edit; ``K``: the keys) delivers ``dW K = R (I+G)^-1 G`` with
``G = K^T (lam C)^-1 K``, so it leaves ``R (I+G)^-1`` unfit (ALGORITHMS.md, MEMIT,
cross-talk). Every rule of the family has that form, ``dW K = R F``, with its own
``G`` (:func:`register_gram_rule`): MEMIT, MEMIT-Merge and PMET ``K^T (lam C)^-1 K``; EMMET
``K^T (lam C + mu I)^-1 K / eps`` (a lone fact is met exactly); AlphaEdit
``K^T P (C_hat P + alpha I)^-1 K`` with the null-space projector ``P`` and the editor's
``C_hat`` of earlier batches (zero on a fresh editor). MEMIT's loop spreads the change
over ``L`` layers, layer ``j`` (0-based) taking the share ``s_j = 1 / (L - j)`` of what
remains (PMET: ``1 / sqrt(L - j)``); taking each layer's delivered change to reach the
last layer unchanged and the keys of the unedited model at every layer, the change left
after the batch is ``D U`` with

    U = prod_j (I - s_j F_j)         (n x n; U = (I+G)^-1 for one layer)

``U`` needs no value optimisation. Column ``i`` of ``D U`` is ``sum_j U[j, i] d_j``. With
each edit's change ``d_j`` taken as a unit vector orthogonal to the others (residuals
treated per edit), the per-edit measures are:

* ``unfit`` = ``U[i, i]``: the share of edit ``i``'s own change left along its direction;
* ``unfit_alone`` = the same for edit ``i`` alone in its batch (its key's own fit only);
* ``unfit_norm`` = ``||U[:, i]||``: the length of what is left on edit ``i``'s key;
* ``cross`` = ``||U[j != i, i]||``: the part of it that batch mates put there;
* ``interferers``: batch mates ``j`` by ``|U[j, i]|``, with the signed weight ``U[j, i]``
  (negative: ``i``'s key is pulled towards ``j``'s target).

With ``values`` (the changes ``d_i`` at the last layer, e.g. a
:class:`~corredit.editors.values.ValueResult`, read through the editor's
``value_changes``: its ``delta``, or the normalised change where a norm follows the MLP; a
merged unit takes its first member's) the actual
``D U`` is formed: ``unfit_actual = ||(D U)_i|| / ||d_i||`` (compare MEMIT's
``target_miss``) and ``unfit_along = <(D U)_i, d_i> / ||d_i||^2``. Per batch and layer:
the singular values of ``G`` (min, median, max), ``cond_G``, ``cond_I_plus_G``, the
numerical rank and the effective rank ``(sum s)^2 / sum s^2``. Where a norm follows
the MLP (Gemma-3) the editor aims the MLP's output, not the residual; ``F`` is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from corredit.editors.alphaedit import AlphaEdit, nullspace_projector
from corredit.editors.base import Editor, get_editor
from corredit.editors.covariance import second_moment_matrices
from corredit.editors.emmet import EMMET
from corredit.editors.keys import KeyReader
from corredit.editors.linalg import SPDSolver, as_float64
from corredit.editors.memit import MEMIT

__all__ = ["forecast", "edit_keys", "Forecast", "register_gram_rule", "gram_rule", "unfit_operator",
           "GRAM_RULES"]

#: Editor class, or registered editor name, -> rule class (see :func:`gram_rule`).
GRAM_RULES: dict[type | str, type] = {}


def register_gram_rule(editor: type | str) -> Callable[[type], type]:
    """Class decorator: the rule giving ``G`` and ``F`` (``dW K = R F``) of an editor class
    (and its subclasses) or of the editor registered under a name. A rule is built as
    ``rule(editor, h, hp, layer, cov)`` and has ``gram(keys (n, d_k)) -> G (n, n)``,
    ``fit(G) -> F (n, n)`` and ``share(j, n_layers)``, the share of the remaining change
    that layer ``j`` of the loop is asked for."""
    def decorate(rule: type) -> type:
        GRAM_RULES[editor] = rule
        return rule
    return decorate


def gram_rule(editor: Editor) -> type:
    """The rule of ``editor``: the first class along its class hierarchy registered by
    class or by the name it was registered under; a class on the way that defines its own
    ``_solve`` has none."""
    for cls in type(editor).__mro__:
        for key in (cls, cls.__dict__.get("name")):
            if key is not None and key in GRAM_RULES:
                return GRAM_RULES[key]
        if "_solve" in cls.__dict__:
            break
    known = sorted(k if isinstance(k, str) else getattr(k, "name", k.__name__)
                   for k in GRAM_RULES)
    raise ValueError(f"forecast: editor {editor.name!r} has no interference rule (it is not "
                     f"of the MEMIT family: {', '.join(known)}); register one with "
                     f"corredit.editors.forecast.register_gram_rule(cls)")


def _eye(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64, device=like.device)


def _ridge_fit(g: torch.Tensor) -> torch.Tensor:
    """``F = (I+G)^-1 G = I - (I+G)^-1``."""
    eye = _eye(g.shape[0], g)
    return eye - torch.linalg.solve(eye + g, eye)


@register_gram_rule(MEMIT)
class MemitGram:
    """``G = K^T (lam C)^-1 K``, ``F = (I+G)^-1 G``."""

    def __init__(self, editor: Editor, h, hp, layer: int, cov: torch.Tensor) -> None:
        self.lam = float(hp.mom2_update_weight)
        self.solver = SPDSolver(cov, what=f"second moment C at layer {layer}")

    def gram(self, keys: torch.Tensor) -> torch.Tensor:
        k = as_float64(keys).T
        g = k.T @ self.solver.solve(k) / self.lam
        return 0.5 * (g + g.T)

    def fit(self, g: torch.Tensor) -> torch.Tensor:
        return _ridge_fit(g)

    def share(self, j: int, n_layers: int) -> float:
        return 1.0 / (n_layers - j)


@register_gram_rule("pmet")
class PmetGram(MemitGram):
    """MEMIT's solve with the change spread as ``R / sqrt(L - j)``."""

    def share(self, j: int, n_layers: int) -> float:
        return (n_layers - j) ** -0.5


@register_gram_rule(EMMET)
class EmmetGram(MemitGram):
    """``G = K^T C'^-1 K / eps`` with ``C' = lam C + mu I``, ``F = (I+G)^-1 G``; one fact
    (or ``eps = 0``): ``F = G^+ G``, an exact fit where ``G`` is invertible."""

    def __init__(self, editor: Editor, h, hp, layer: int, cov: torch.Tensor) -> None:
        c = hp.mom2_update_weight * as_float64(cov)
        if hp.update_norm_lambda:
            c = c + hp.update_norm_lambda * _eye(c.shape[0], c)
        self.eps = float(hp.emmet_lambda)
        self.solver = SPDSolver(c, what=f"scaled second moment C' at layer {layer}")

    def gram(self, keys: torch.Tensor) -> torch.Tensor:
        k = as_float64(keys).T
        d = k.T @ self.solver.solve(k)
        d = 0.5 * (d + d.T)
        return d / self.eps if self.eps and d.shape[0] > 1 else d

    def fit(self, g: torch.Tensor) -> torch.Tensor:
        if self.eps and g.shape[0] > 1:
            return _ridge_fit(g)
        return torch.linalg.pinv(g, hermitian=True) @ g


@register_gram_rule(AlphaEdit)
class AlphaEditGram(MemitGram):
    """``G = K^T P (C_hat P + alpha I)^-1 K``, ``F = (I+G)^-1 G``; ``P`` and ``C_hat``
    from the editor's state on ``h`` when it has edited there, else fresh (``C_hat = 0``)."""

    def __init__(self, editor: Editor, h, hp, layer: int, cov: torch.Tensor) -> None:
        st = editor.state_for(h).get(layer) if hasattr(editor, "state_for") else None
        if st is None:
            self.proj = nullspace_projector(cov, rule=hp.nullspace_rule,
                                            energy=hp.nullspace_energy,
                                            threshold=hp.nullspace_threshold)
            c_hat = torch.zeros_like(self.proj)
        else:
            self.proj, c_hat = as_float64(st["projector"]), as_float64(st["c_hat"])
        c_hat = c_hat.to(self.proj.device)
        self.b = c_hat @ self.proj + hp.l2_weight * _eye(self.proj.shape[0], self.proj)

    def gram(self, keys: torch.Tensor) -> torch.Tensor:
        k = as_float64(keys).T.to(self.proj.device)
        return k.T @ self.proj @ torch.linalg.solve(self.b, k)

    def fit(self, g: torch.Tensor) -> torch.Tensor:
        return _ridge_fit(g)


def unfit_operator(fits: Sequence[torch.Tensor], shares: Sequence[float] | None = None
                   ) -> torch.Tensor:
    """``U = prod_j (I - s_j F_j)`` over the layers' fit operators in edit order, with
    ``s_j`` the layer's share of the remaining change (MEMIT: ``1 / (L - j)``)."""
    n, n_layers = fits[0].shape[0], len(fits)
    shares = [1.0 / (n_layers - j) for j in range(n_layers)] if shares is None else shares
    u = _eye(n, fits[0])
    for f, s in zip(fits, shares):
        u = u @ (_eye(n, f) - s * f)
    return u


def _spectrum(g: torch.Tensor) -> dict[str, float]:
    s = torch.linalg.svdvals(g).cpu().numpy()
    s1 = torch.linalg.svdvals(g + _eye(g.shape[0], g)).cpu().numpy()
    top = float(s.max())
    tol = top * g.shape[0] * np.finfo(np.float64).eps
    return {"g_min": float(s.min()), "g_median": float(np.median(s)), "g_max": top,
            "cond_G": top / float(s.min()) if s.min() > 0 else float("inf"),
            "cond_I_plus_G": float(s1.max() / s1.min()),
            "rank": int((s > tol).sum()),
            "eff_rank": float(s.sum() ** 2 / (s ** 2).sum()) if top > 0 else 0.0}


@dataclass
class Forecast:
    """Per-edit forecast (arrays aligned with the requests) and per-(batch, layer) spectra;
    see the module docstring for the definitions."""

    editor: str
    case_ids: list[str]
    batch: np.ndarray
    unit: list[str]
    unfit: np.ndarray
    unfit_alone: np.ndarray
    unfit_norm: np.ndarray
    cross: np.ndarray
    interferers: list[list[tuple[str, float]]]
    layers: list[dict[str, Any]]
    operators: dict[int, np.ndarray] = field(repr=False, default_factory=dict)
    unit_ids: dict[int, list[str]] = field(repr=False, default_factory=dict)
    unfit_actual: np.ndarray | None = None
    unfit_along: np.ndarray | None = None

    def residual(self, batch: int, values: Any) -> np.ndarray:
        """The change predicted to be left on each unit of ``batch``: rows ``U^T D`` for
        ``D`` (n_units, d), one change per unit in the batch's unit order."""
        return self.operators[batch].T @ np.asarray(as_float64(values).cpu())

    def edit_frame(self):
        """One row per edit: ``batch, case_id, unit, unfit, unfit_alone, unfit_norm, cross``
        (+ ``unfit_actual, unfit_along`` with values) and ``interferer_<r>`` /
        ``interferer_<r>_weight`` for each rank."""
        import pandas as pd

        df = pd.DataFrame({"editor": self.editor, "batch": self.batch,
                           "case_id": self.case_ids, "unit": self.unit,
                           "unfit": self.unfit, "unfit_alone": self.unfit_alone,
                           "unfit_norm": self.unfit_norm, "cross": self.cross})
        if self.unfit_actual is not None:
            df["unfit_actual"], df["unfit_along"] = self.unfit_actual, self.unfit_along
        k = max((len(x) for x in self.interferers), default=0)
        for r in range(k):
            df[f"interferer_{r + 1}"] = [x[r][0] if r < len(x) else None
                                         for x in self.interferers]
            df[f"interferer_{r + 1}_weight"] = [x[r][1] if r < len(x) else np.nan
                                                for x in self.interferers]
        return df

    def layer_frame(self):
        """One row per (batch, layer) with the spectrum of ``G``; layer ``-1`` rows
        summarise the batch (``unfit_mean``, ``n``, ``n_units``)."""
        import pandas as pd

        return pd.DataFrame(self.layers)


def _key_groups(editor: Editor, h, reqs: list, hp, seed: int) -> list[list[int]]:
    """The value units of a batch as index groups (MEMIT-Merge merges; others do not)."""
    if hasattr(editor, "groups_for"):
        return [list(g) for g in editor.groups_for(h, reqs, hp, seed)]
    return [[i] for i in range(len(reqs))]


def _values_matrix(values: Any, n: int, ed: Editor, h, hp) -> torch.Tensor:
    if hasattr(values, "delta"):        # a ValueResult: the change it asks of the solve's stream
        d = ed.value_changes(h, hp, values)     # every editor with a gram rule is MEMIT's kin
    else:
        d = values
    d = as_float64(d)
    if d.dim() != 2 or d.shape[0] != n:
        raise ValueError(f"forecast: values must hold one change per request, shape ({n}, d); "
                         f"got {tuple(d.shape)}")
    return d


@torch.no_grad()
def edit_keys(h, requests: Sequence, editor: Editor | str, *, seed: int = 0
              ) -> dict[int, torch.Tensor]:
    """``{layer: (n, d_k) float64}``: the keys ``editor`` writes at, at each of its layers,
    on ``h`` as it is (its context templates for ``seed``, its key averaging)."""
    from corredit.models import Site

    ed = get_editor(editor)() if isinstance(editor, str) else editor
    hp = ed.hparams_for(h)
    layers = [int(x) for x in hp.layers]
    sites = [Site("mlp_out", l, "input") for l in layers]
    reader = KeyReader(h, list(requests), ed._groups(h, hp, seed),
                       max_batch_tokens=ed.max_batch_tokens)
    vals = reader.read(sites)
    return {l: reader.average(vals[s], hp.key_averaging) for l, s in zip(layers, sites)}


@torch.no_grad()
def forecast(h, requests: Sequence, editor: Editor | str, stats, *,
             batches: Sequence[Sequence[int]] | None = None, seed: int = 0, top_k: int = 3,
             values: Any = None, keys: dict[int, torch.Tensor] | None = None) -> Forecast:
    """Forecast of what ``editor``'s batch solve leaves unfit for each request.

    Example: ``forecast(h, reqs, "memit", stats, batches=[[0, 1], [2, 3]])``. ``editor``
    is a MEMIT-family editor or its registered name (per-model defaults); ``stats`` is
    what the editor takes (``{layer: SecondMoment}`` or a callable); ``batches`` are index
    lists into ``requests`` (default: one batch of all); ``seed`` picks the context
    templates as the editor's ``seed`` does; ``values``: optional changes per request
    (see the module docstring); ``keys``: :func:`edit_keys` of ``requests`` read before
    (else they are read on ``h`` as it is).
    """
    ed = get_editor(editor)() if isinstance(editor, str) else editor
    rule_cls = gram_rule(ed)
    reqs = list(requests)
    if not reqs:
        raise ValueError("forecast: no requests")
    batches = [list(range(len(reqs)))] if batches is None else [list(b) for b in batches]
    seen = [i for b in batches for i in b]
    if not all(0 <= i < len(reqs) for i in seen) or len(set(seen)) != len(seen):
        raise ValueError(f"forecast: batches must be disjoint indices into the {len(reqs)} "
                         f"requests")
    hp = ed.hparams_for(h)
    layers = [int(x) for x in hp.layers]
    covs = second_moment_matrices(stats, h, layers, editor=ed.name, precision=hp.mom2_precision)
    rules = {l: rule_cls(ed, h, hp, l, covs[l]) for l in layers}
    keys = edit_keys(h, reqs, ed, seed=seed) if keys is None else keys
    bad = [l for l in layers if l not in keys or tuple(keys[l].shape)[0] != len(reqs)]
    if bad:
        raise ValueError(f"forecast: keys lack layer(s) {bad} or one row per request")
    d_all = None if values is None else _values_matrix(values, len(reqs), ed, h, hp)
    n = len(reqs)
    out: dict[str, Any] = {k: np.full(n, np.nan) for k in
                           ("unfit", "unfit_alone", "unfit_norm", "cross", "actual", "along")}
    batch_of, unit_of = np.full(n, -1), [""] * n
    interferers: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    rows, operators, unit_ids = [], {}, {}
    for b, idx in enumerate(batches):
        groups = [[idx[i] for i in g] for g in _key_groups(ed, h, [reqs[i] for i in idx], hp, seed)]
        heads = [g[0] for g in groups]
        ids = ["+".join(str(reqs[i].case_id) for i in g) for g in groups]
        fits, alone = [], []
        for l in layers:
            g = rules[l].gram(keys[l][heads])
            fits.append(rules[l].fit(g))
            alone.append(torch.stack([rules[l].fit(g[i:i + 1, i:i + 1])[0, 0]
                                      for i in range(len(heads))]))
            rows.append({"batch": b, "layer": l, "n": len(idx), "n_units": len(heads),
                         **_spectrum(g)})
        shares = [rules[l].share(j, len(layers)) for j, l in enumerate(layers)]
        u = unfit_operator(fits, shares)
        u_alone = torch.ones(len(heads), dtype=torch.float64, device=u.device)
        for s, a in zip(shares, alone):
            u_alone = u_alone * (1 - s * a)
        diag = torch.diagonal(u)
        off = u - torch.diag(diag)
        per_unit = {"unfit": diag, "unfit_alone": u_alone, "unfit_norm": u.norm(dim=0),
                    "cross": off.norm(dim=0)}
        if d_all is not None:
            dd = d_all[heads].to(u.device)
            left = u.T @ dd
            norm2 = (dd * dd).sum(1).clamp(min=1e-300)
            per_unit["actual"] = left.norm(dim=1) / norm2.sqrt()
            per_unit["along"] = (left * dd).sum(1) / norm2
        u_np = u.cpu().numpy()
        operators[b], unit_ids[b] = u_np, ids
        for ui, grp in enumerate(groups):
            order = [j for j in np.argsort(-np.abs(u_np[:, ui]), kind="stable") if j != ui]
            top = [(ids[j], float(u_np[j, ui])) for j in order[:top_k]]
            for i in grp:
                batch_of[i], unit_of[i], interferers[i] = b, ids[ui], top
                for key, v in per_unit.items():
                    out[key][i] = float(v[ui])
        rows.append({"batch": b, "layer": -1, "n": len(idx), "n_units": len(heads),
                     "unfit_mean": float(diag.mean())})
    return Forecast(ed.name, [str(r.case_id) for r in reqs], batch_of, unit_of, out["unfit"],
                    out["unfit_alone"], out["unfit_norm"], out["cross"], interferers, rows,
                    operators, unit_ids,
                    None if d_all is None else out["actual"],
                    None if d_all is None else out["along"])
