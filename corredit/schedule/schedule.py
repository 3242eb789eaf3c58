"""A schedule: which batch each edit goes to, and in which order batches and edits come.

Usage::

    from corredit.schedule import Schedule
    s = Schedule(batches=((2, 0), (1,)), name="custom", batch_size=2)
    s.order                     # (2, 0, 1): request indices in application order
    s.split(requests)           # [[requests[2], requests[0]], [requests[1]]]
    df = s.to_frame()           # batch, position, index, case_id
    Schedule.from_frame(df) == s                    # True
    s.batch_correlation(X, requests)                # per-batch similarity (see measure.py)

``batches`` holds request indices ``0..n-1``, each exactly once; a batch is applied as one
edit step, batches in order (``batch_size=1`` schedules are sequential orders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, TypeVar

import numpy as np
import pandas as pd

from corredit.schedule.measure import batch_correlation, summarize_correlation

__all__ = ["Schedule", "FRAME_COLUMNS"]

#: The columns of :meth:`Schedule.to_frame`.
FRAME_COLUMNS: tuple[str, ...] = ("batch", "position", "index", "case_id")

T = TypeVar("T")


@dataclass(frozen=True)
class Schedule:
    """Batches of request indices in application order, with the scheduler that made them.

    ``batch_size`` is the nominal size (no batch may exceed it; ``None`` means the largest
    batch's size); ``case_ids``, when given, names the request behind each index.
    """

    batches: tuple[tuple[int, ...], ...]
    name: str = "custom"
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    seed: int | None = None
    batch_size: int | None = None
    case_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        batches = tuple(tuple(int(i) for i in b) for b in self.batches)
        object.__setattr__(self, "batches", batches)
        object.__setattr__(self, "params", dict(self.params))
        n = sum(len(b) for b in batches)
        seen = np.zeros(n, dtype=bool)
        for bi, batch in enumerate(batches):
            if not batch:
                raise ValueError(f"schedule {self.name!r}: batch {bi} is empty")
            for i in batch:
                if not 0 <= i < n:
                    raise ValueError(f"schedule {self.name!r}: batch {bi} holds index {i}, "
                                     f"outside 0..{n - 1}")
                if seen[i]:
                    raise ValueError(f"schedule {self.name!r}: index {i} appears twice "
                                     f"(again in batch {bi})")
                seen[i] = True
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", max((len(b) for b in batches), default=0))
        else:
            size = int(self.batch_size)
            object.__setattr__(self, "batch_size", size)
            for bi, batch in enumerate(batches):
                if len(batch) > size:
                    raise ValueError(f"schedule {self.name!r}: batch {bi} holds {len(batch)} "
                                     f"edits, more than batch_size={size}")
        if self.case_ids is not None:
            ids = tuple(str(c) for c in self.case_ids)
            if len(ids) != n:
                raise ValueError(f"schedule {self.name!r}: {len(ids)} case_ids for {n} edits")
            object.__setattr__(self, "case_ids", ids)
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))

    # --- views -----------------------------------------------------------------------
    @property
    def n_edits(self) -> int:
        """How many edits the schedule places."""
        return sum(len(b) for b in self.batches)

    @property
    def n_batches(self) -> int:
        """How many batches (edit steps)."""
        return len(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def sizes(self) -> tuple[int, ...]:
        """The size of each batch."""
        return tuple(len(b) for b in self.batches)

    @property
    def order(self) -> tuple[int, ...]:
        """Every request index in application order."""
        return tuple(i for b in self.batches for i in b)

    def batch_of(self) -> np.ndarray:
        """``out[i]`` = the batch that request ``i`` belongs to."""
        out = np.empty(self.n_edits, dtype=np.int64)
        for bi, batch in enumerate(self.batches):
            out[list(batch)] = bi
        return out

    def split(self, items: Sequence[T]) -> list[list[T]]:
        """``items`` (one per request, in request order) grouped as the batches say."""
        if len(items) != self.n_edits:
            raise ValueError(f"schedule {self.name!r} places {self.n_edits} edits but "
                             f"{len(items)} items were given")
        if self.case_ids is not None:
            for i, item in enumerate(items):
                cid = getattr(item, "case_id", None)
                if cid is not None and str(cid) != self.case_ids[i]:
                    raise ValueError(f"schedule {self.name!r}: item {i} has case_id {cid!r} "
                                     f"but the schedule expects {self.case_ids[i]!r}")
        return [[items[i] for i in batch] for batch in self.batches]

    # --- tables ----------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Tidy rows in application order: ``batch``, ``position`` (within the batch),
        ``index`` (request index), ``case_id`` (None when unknown). ``df.attrs`` keeps the
        name, params, seed and batch size."""
        batch = np.repeat(np.arange(self.n_batches, dtype=np.int64), self.sizes)
        position = np.concatenate([np.arange(len(b), dtype=np.int64) for b in self.batches]) \
            if self.batches else np.empty(0, dtype=np.int64)
        index = np.asarray(self.order, dtype=np.int64)
        ids = ([self.case_ids[i] for i in index] if self.case_ids is not None
               else [None] * len(index))
        frame = pd.DataFrame({
            "batch": batch, "position": position, "index": index,
            "case_id": pd.Series(ids, dtype=object),
        })
        frame.attrs.update({"schedule": self.name, "params": dict(self.params),
                            "seed": self.seed, "batch_size": self.batch_size})
        return frame

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> "Schedule":
        """Inverse of :meth:`to_frame`; keyword arguments override what ``frame.attrs``
        holds. Rows may come in any order; batches must be numbered ``0..B-1`` and
        positions ``0..m-1`` within each batch."""
        missing = [c for c in ("batch", "position", "index") if c not in frame.columns]
        if missing:
            raise ValueError(f"schedule frame lacks column(s) {missing}")
        for col in ("batch", "position", "index"):
            values = frame[col]
            if values.isna().any():
                row = int(np.flatnonzero(values.isna().to_numpy())[0])
                raise ValueError(f"schedule frame row {row}: field {col!r} is missing")
            as_float = values.to_numpy(dtype=np.float64)
            if (as_float != np.round(as_float)).any() or (as_float < 0).any():
                row = int(np.flatnonzero((as_float != np.round(as_float)) | (as_float < 0))[0])
                raise ValueError(f"schedule frame row {row}: field {col!r} must be a "
                                 f"non-negative integer, got {values.iloc[row]!r}")
        ordered = frame.sort_values(["batch", "position"], kind="stable")
        batch = ordered["batch"].to_numpy(dtype=np.int64)
        position = ordered["position"].to_numpy(dtype=np.int64)
        index = ordered["index"].to_numpy(dtype=np.int64)
        labels = np.unique(batch)
        if len(labels) and not np.array_equal(labels, np.arange(len(labels))):
            raise ValueError(f"schedule frame: batches must be numbered 0..{len(labels) - 1}, "
                             f"got {labels[:10].tolist()}...")
        batches: list[tuple[int, ...]] = []
        bounds = np.flatnonzero(np.diff(batch)) + 1
        for b, (pos, idx) in enumerate(zip(np.split(position, bounds), np.split(index, bounds))):
            if not np.array_equal(pos, np.arange(len(pos))):
                raise ValueError(f"schedule frame: positions of batch {b} must be "
                                 f"0..{len(pos) - 1}, got {pos[:10].tolist()}")
            batches.append(tuple(idx.tolist()))
        case_ids = None
        if "case_id" in frame.columns and frame["case_id"].notna().all() and len(frame):
            by_index = dict(zip(index.tolist(), ordered["case_id"].astype(str).tolist()))
            if len(by_index) == len(index) and set(by_index) == set(range(len(index))):
                case_ids = tuple(by_index[i] for i in range(len(index)))
        attrs = frame.attrs
        return cls(
            batches=tuple(batches),
            name=name if name is not None else attrs.get("schedule", "custom"),
            params=params if params is not None else attrs.get("params", {}),
            seed=seed if seed is not None else attrs.get("seed"),
            batch_size=batch_size if batch_size is not None else attrs.get("batch_size"),
            case_ids=case_ids,
        )

    # --- measures --------------------------------------------------------------------
    def batch_correlation(
        self,
        embeddings: Any,
        requests: Any = None,
    ) -> pd.DataFrame:
        """Per-batch similarity under ``embeddings`` (an array or ``{name: array}``): see
        :func:`corredit.schedule.batch_correlation`."""
        return batch_correlation(self, embeddings, requests)

    def summary(self, embeddings: Any, requests: Any = None) -> dict[str, float]:
        """Whole-schedule similarity figures: see
        :func:`corredit.schedule.summarize_correlation`."""
        return summarize_correlation(self, embeddings, requests)
