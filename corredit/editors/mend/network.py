"""MEND's gradient transform: a small network that maps the factors of an MLP weight's
fine-tuning gradient (the weight's inputs and the loss gradient at its outputs, one pair
per token) to the factors of a parameter update.

Usage::

    from corredit.editors.mend.network import MendConfig, MendNetwork
    cfg = MendConfig(layers=(3, 4, 5), key_size=512, hidden_size=128)
    net = MendNetwork(cfg, seed=0)
    dw = net.update(0, keys, deltas)       # (d, d_k) update of layer cfg.layers[0]'s W_out
    net.state_dict()                       # tensors only (saved as safetensors)

For every edited weight ``W`` (``d x d_k``, keys to values) the gradient of a loss is
``sum_t delta_t x_t^T`` over tokens ``t``, with ``x_t`` the key (input of ``W``) and
``delta_t`` the loss gradient at ``W``'s output. The transform normalises ``x_t`` and
``delta_t`` by running means and standard deviations (accumulated while training), feeds
their concatenation through ``n_hidden + 1`` residual low-rank layers
``z <- z + relu(scale_m * (U V z + b) + shift_m)`` (``U`` starts at zero, so the transform
starts as the identity; ``m`` indexes the edited weight when one transform is shared by
weights of one shape) and splits the output back into ``x~_t`` and ``delta~_t``. The
update is ``-lr_m * sum_t delta~_t x~_t^T`` with a learned step size ``lr_m`` per weight.

Reference facts (eric-mitchell/mend, EasyEdit's MEND): rank 1920 (capped at the input
width), one hidden layer, identity initialisation with ``V`` drawn from a standard normal,
mode scale 1 and shift 0, normalisation on, one transform shared per weight shape, step
sizes starting at 1e-4. The reference adds ``lr_m * sum_t delta~_t x~_t^T`` and leaves the
sign to training; corredit subtracts it, so a positive ``lr_m`` starts as a descent step.
The running statistics follow Welford's updates (merged batch-wise here, in float64).
The reference's variants without the joint transform (``combine`` off: one-sided,
``x_only``, ``delta_only``) are not offered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["MendConfig", "MendNetwork", "GradientTransform", "RunningNorm", "LowRankLayer"]


@dataclass(frozen=True)
class MendConfig:
    """Shape of a MEND network: the edited layers (their ``W_out``), the key width ``d_k``
    and hidden width ``d`` of the model, and the transform's knobs."""

    layers: tuple[int, ...]
    key_size: int
    hidden_size: int
    rank: int = 1920
    n_hidden: int = 1
    shared: bool = True
    norm: bool = True
    edit_lr: float = 1e-4
    model: str = ""
    architecture: str = ""

    def __post_init__(self) -> None:
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"MendConfig: layers must be non-empty and strictly ascending, "
                             f"got {self.layers!r}")
        if self.rank < 1 or self.n_hidden < 0 or self.key_size < 1 or self.hidden_size < 1:
            raise ValueError("MendConfig: rank, key_size and hidden_size must be >= 1, n_hidden >= 0")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = list(self.layers)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "MendConfig") -> "MendConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{where}: unknown network field(s) {unknown}; known: {sorted(known)}")
        values = dict(d)
        values["layers"] = tuple(int(x) for x in values.get("layers", ()))
        return cls(**values)


class RunningNorm(nn.Module):
    """Per-coordinate running mean and standard deviation of rows (Welford, merged per
    batch in float64); ``forward`` standardises with the statistics seen so far."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, rows: torch.Tensor) -> None:
        """Add ``rows`` (n, dim) to the statistics."""
        x = rows.detach().double().reshape(-1, rows.shape[-1])
        n = x.shape[0]
        if n == 0:
            return
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        total = self.count + n
        diff = mean_b - self.mean
        self.mean += diff * (n / total)
        self.m2 += m2_b + diff ** 2 * (self.count * n / total)
        self.count.fill_(total)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if self.count < 2:
            raise RuntimeError(f"RunningNorm: needs at least 2 rows of statistics, has "
                               f"{int(self.count)}")
        std = (self.m2 / (self.count - 1)).sqrt()
        return (rows - self.mean.to(rows.dtype)) / (std.to(rows.dtype) + 1e-7)


class LowRankLayer(nn.Module):
    """``z + relu(scale_m * (U V z + b) + shift_m)``; ``U`` starts at zero."""

    def __init__(self, dim: int, rank: int, n_modes: int, generator: torch.Generator) -> None:
        super().__init__()
        r = min(rank, dim)
        self.u = nn.Parameter(torch.zeros(dim, r))
        self.v = nn.Parameter(torch.randn(r, dim, generator=generator))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mode_scale = nn.Parameter(torch.ones(n_modes, dim))
        self.mode_shift = nn.Parameter(torch.zeros(n_modes, dim))

    def forward(self, z: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (z @ self.v.T) @ self.u.T + self.bias
        pre = pre * self.mode_scale[mode] + self.mode_shift[mode]
        return z + pre.clamp(min=0)


class GradientTransform(nn.Module):
    """Normalise ``(x, delta)``, transform their concatenation, split it back."""

    def __init__(self, x_dim: int, delta_dim: int, cfg: MendConfig, n_modes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.x_dim, self.delta_dim, self.norm = x_dim, delta_dim, cfg.norm
        self.x_norm, self.delta_norm = RunningNorm(x_dim), RunningNorm(delta_dim)
        self.layers = nn.ModuleList(LowRankLayer(x_dim + delta_dim, cfg.rank, n_modes, generator)
                                    for _ in range(cfg.n_hidden + 1))

    def forward(self, x: torch.Tensor, delta: torch.Tensor, mode: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.norm:
            x, delta = self.x_norm(x), self.delta_norm(delta)
        z = torch.cat([x, delta], dim=-1)
        for layer in self.layers:
            z = layer(z, mode)
        return z[:, : self.x_dim], z[:, self.x_dim:]


class MendNetwork(nn.Module):
    """The transforms of every edited weight and their learned step sizes ``edit_lrs``."""

    def __init__(self, cfg: MendConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.config = cfg
        gen = torch.Generator().manual_seed(int(seed))
        n = len(cfg.layers)
        if cfg.shared:
            self.transforms = nn.ModuleList([GradientTransform(cfg.key_size, cfg.hidden_size, cfg, n, gen)])
        else:
            self.transforms = nn.ModuleList(GradientTransform(cfg.key_size, cfg.hidden_size, cfg, 1, gen)
                                            for _ in range(n))
        self.edit_lrs = nn.Parameter(torch.full((n,), float(cfg.edit_lr)))

    def _transform(self, i: int) -> tuple[GradientTransform, int]:
        return (self.transforms[0], i) if self.config.shared else (self.transforms[i], 0)

    def update_statistics(self, i: int, x: torch.Tensor, delta: torch.Tensor) -> None:
        """Add rows of weight ``i``'s factors to its transform's running statistics."""
        t, _ = self._transform(i)
        t.x_norm.update(x)
        t.delta_norm.update(delta)

    def update(self, i: int, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """The ``(d, d_k)`` update of edited weight ``i`` (position in ``config.layers``)
        from per-token keys ``x`` (n, d_k) and output gradients ``delta`` (n, d)."""
        if x.shape[0] == 0:
            return torch.zeros(delta.shape[-1], x.shape[-1], dtype=x.dtype, device=x.device)
        t, mode = self._transform(i)
        x_t, d_t = t(x.float(), delta.float(), mode)
        return -self.edit_lrs[i] * (d_t.T @ x_t)
