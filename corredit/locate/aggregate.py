"""Averages of causal-tracing rows over facts, layer suggestions, and the correlation angle.

Usage::

    from corredit.locate.aggregate import aggregate, suggest_layers, profile_correlation
    agg = aggregate(rows, n_boot=1000, seed=0)     # kind, group, layer, effect, lo, hi, n_facts
    suggest_layers(agg, kind="mlp")                # {"edit_layer": 4, "memit_layers": [2, 3, 4, 5, 6], ...}
    pairs, summary = profile_correlation(rows, kind="mlp")

Works on the tidy rows of :func:`corredit.locate.trace` (pandas and numpy only). Each
fact is first reduced to one value per token group and layer (the mean over the group's
tokens), so every fact weighs the same; intervals are percentile bootstraps over facts.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from corredit.analysis.bootstrap import Resampler, bootstrap_ci, percentile_interval

__all__ = ["GROUPS", "token_groups", "fact_groups", "aggregate", "suggest_layers",
           "fact_profiles", "profile_correlation"]

#: The six token groups of the aggregate plots, in plotting order.
GROUPS: tuple[str, ...] = ("first subject token", "middle subject tokens", "last subject token",
                           "first subsequent token", "further tokens", "last token")


def token_groups(first: int, last: int, n_tokens: int) -> dict[str, list[int]]:
    """Positions of each group for a subject at ``first..last`` (inclusive) in a prompt
    of ``n_tokens``; a group can be empty, and a position can sit in two groups (a
    one-token subject is first and last; a subject two tokens before the end makes the
    first subsequent token the last)."""
    return {
        GROUPS[0]: [first], GROUPS[1]: list(range(first + 1, last)), GROUPS[2]: [last],
        GROUPS[3]: [last + 1] if last + 1 < n_tokens else [],
        GROUPS[4]: list(range(last + 2, n_tokens - 1)), GROUPS[5]: [n_tokens - 1],
    }


def fact_groups(rows: pd.DataFrame, value: str = "effect") -> pd.DataFrame:
    """One row per (kind, case_id, group, layer): the mean ``value`` over the group's
    tokens of that fact (groups a fact lacks are left out)."""
    out = []
    for (kind, case), g in rows.groupby(["kind", "case_id"], sort=False):
        head = g.iloc[0]
        grid = g.pivot_table(index="position", columns="layer", values=value, aggfunc="mean")
        for name, positions in token_groups(int(head["subject_first"]), int(head["subject_last"]),
                                            int(head["n_tokens"])).items():
            if not positions:
                continue
            mean = grid.loc[positions].mean(axis=0)
            out.append(pd.DataFrame({"kind": kind, "case_id": case, "subject": head.get("subject"),
                                     "group": name, "layer": mean.index.astype(int),
                                     value: mean.to_numpy()}))
    cols = ["kind", "case_id", "subject", "group", "layer", value]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)


def aggregate(rows: pd.DataFrame, *, value: str = "effect", n_boot: int = 1000, ci: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """Mean ``value`` per (kind, group, layer) over facts with a bootstrap interval
    (facts resampled, seeded): columns ``kind, group, layer, effect, lo, hi, n_facts``
    (``effect`` holds the mean of ``value``), groups in :data:`GROUPS` order."""
    per = fact_groups(rows, value)
    out = []
    for (kind, group), g in per.groupby(["kind", "group"], sort=False):
        wide = g.pivot_table(index="case_id", columns="layer", values=value)
        x = wide.to_numpy(dtype=float)
        mean = np.nanmean(x, axis=0)
        if len(x) > 1 and n_boot > 0:
            lo, hi = percentile_interval(Resampler(n=len(x)).means(x, n_boot, seed), ci)
        else:
            lo, hi = mean, mean
        out.append(pd.DataFrame({"kind": kind, "group": group, "layer": wide.columns.astype(int),
                                 "effect": mean, "lo": lo, "hi": hi,
                                 "n_facts": (~np.isnan(x)).sum(axis=0)}))
    if not out:
        return pd.DataFrame(columns=["kind", "group", "layer", "effect", "lo", "hi", "n_facts"])
    df = pd.concat(out, ignore_index=True)
    df["group"] = pd.Categorical(df["group"], categories=list(GROUPS), ordered=True)
    return df.sort_values(["kind", "group", "layer"]).reset_index(drop=True)


def suggest_layers(agg: pd.DataFrame, *, kind: str = "mlp", group: str = "last subject token",
                   share: float = 0.5, max_width: int = 5) -> dict[str, Any]:
    """The edit layer (argmax of ``group``'s mean effect for ``kind``) and a MEMIT range:
    the contiguous window grown from it, one neighbour at a time (the larger side first),
    until it holds ``share`` of the profile's positive effect or ``max_width`` layers."""
    prof = agg[(agg["kind"] == kind) & (agg["group"] == group)].sort_values("layer")
    if prof.empty:
        raise ValueError(f"no {kind!r} rows for group {group!r} to suggest layers from")
    layers, eff = prof["layer"].to_numpy(int), prof["effect"].to_numpy(float)
    peak = int(np.nanargmax(eff))
    pos = np.clip(np.nan_to_num(eff), 0, None)
    total = pos.sum()
    lo = hi = peak
    while hi - lo + 1 < max_width and (total <= 0 or pos[lo:hi + 1].sum() < share * total):
        left = pos[lo - 1] if lo > 0 else -np.inf
        right = pos[hi + 1] if hi + 1 < len(pos) else -np.inf
        if left == right == -np.inf:
            break
        lo, hi = (lo - 1, hi) if left >= right else (lo, hi + 1)
    return {"kind": kind, "group": group, "edit_layer": int(layers[peak]),
            "memit_layers": [int(l) for l in layers[lo:hi + 1]],
            "peak_effect": float(eff[peak]),
            "window_share": float(pos[lo:hi + 1].sum() / total) if total > 0 else float("nan"),
            "profile": {int(l): float(e) for l, e in zip(layers, eff)}}


def fact_profiles(rows: pd.DataFrame, *, kind: str = "mlp",
                  group: str = "last subject token") -> pd.DataFrame:
    """Facts × layers: each fact's effect profile over layers at ``group``."""
    per = fact_groups(rows[rows["kind"] == kind])
    return per[per["group"] == group].pivot_table(index="case_id", columns="layer", values="effect")


def profile_correlation(rows: pd.DataFrame, *, kind: str = "mlp", group: str = "last subject token",
                        key_similarity: tuple[Sequence[str], np.ndarray] | None = None,
                        n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Do facts that share a subject, or whose keys are alike, peak at the same layers?

    Returns ``(pairs, summary)``. ``pairs``: one row per pair of facts with the Pearson
    correlation of their layer profiles (``profile_corr``), the distance between their
    peak layers (``peak_gap``), ``same_subject`` and, given ``key_similarity`` (case ids
    and their similarity matrix), ``key_sim``. ``summary``: ``measure, value, lo, hi``
    for the mean profile correlation of same- and different-subject pairs, their
    difference, and the Spearman correlation of key similarity with profile correlation;
    intervals bootstrap pairs clustered by the first fact's subject (seeded).
    """
    prof = fact_profiles(rows, kind=kind, group=group)
    subj = rows.drop_duplicates("case_id").set_index("case_id")["subject"]
    x = prof.to_numpy(float)
    x = x - x.mean(1, keepdims=True)
    norm = np.linalg.norm(x, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (x @ x.T) / np.outer(norm, norm)
    peaks = prof.to_numpy(float).argmax(1)
    ids = list(prof.index)
    iu, ju = np.triu_indices(len(ids), 1)
    pairs = pd.DataFrame({"case_a": [ids[i] for i in iu], "case_b": [ids[j] for j in ju],
                          "profile_corr": corr[iu, ju], "peak_gap": np.abs(peaks[iu] - peaks[ju]),
                          "same_subject": [subj[ids[i]] == subj[ids[j]] for i, j in zip(iu, ju)],
                          "subject_a": [subj[ids[i]] for i in iu]})
    if key_similarity is not None:
        kid, sim = key_similarity
        where = {str(c): n for n, c in enumerate(kid)}
        a = np.array([where[str(c)] for c in pairs["case_a"]], dtype=int)
        b = np.array([where[str(c)] for c in pairs["case_b"]], dtype=int)
        pairs["key_sim"] = np.asarray(sim)[a, b] if len(a) else []
    out = []
    for name, mask in (("same subject", pairs["same_subject"]), ("different subject", ~pairs["same_subject"])):
        part = pairs[mask]
        out.append((f"profile_corr: {name}", *bootstrap_ci(part["profile_corr"], part["subject_a"],
                                                           n_boot=n_boot, seed=seed), len(part)))
        out.append((f"peak_gap: {name}", *bootstrap_ci(part["peak_gap"], part["subject_a"],
                                                       n_boot=n_boot, seed=seed), len(part)))
    if pairs["same_subject"].any() and (~pairs["same_subject"]).any():
        out.append(("profile_corr: same - different", *_difference(pairs, n_boot, seed), len(pairs)))
    if "key_sim" in pairs and len(pairs) > 2:
        rho = _spearman(pairs["key_sim"].to_numpy(float), pairs["profile_corr"].to_numpy(float))
        rng = np.random.default_rng(seed)
        reps = [_spearman(*pairs.iloc[rng.integers(0, len(pairs), len(pairs))][["key_sim", "profile_corr"]]
                          .to_numpy(float).T) for _ in range(min(n_boot, 200))]
        lo, hi = percentile_interval(np.asarray(reps)[:, None], 0.95)
        out.append(("spearman(key_sim, profile_corr)", rho, float(lo[0]), float(hi[0]), len(pairs)))
    summary = pd.DataFrame(out, columns=["measure", "value", "lo", "hi", "n_pairs"])
    return pairs, summary


def _difference(pairs: pd.DataFrame, n_boot: int, seed: int) -> tuple[float, float, float]:
    same = pairs["same_subject"].to_numpy(bool)
    v = pairs["profile_corr"].to_numpy(float)
    cols = np.stack([np.where(same, v, np.nan), np.where(~same, v, np.nan)], 1)
    reps = Resampler(pairs["subject_a"]).means(cols, max(n_boot, 1), seed)
    lo, hi = percentile_interval(reps[:, :1] - reps[:, 1:], 0.95)
    return float(np.nanmean(cols[:, 0]) - np.nanmean(cols[:, 1])), float(lo[0]), float(hi[0])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    keep = ~(np.isnan(a) | np.isnan(b))
    if keep.sum() < 3:
        return float("nan")
    ra, rb = pd.Series(a[keep]).rank().to_numpy(), pd.Series(b[keep]).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])
