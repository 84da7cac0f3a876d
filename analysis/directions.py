"""Seeded random directions in weight space, regenerated per tensor, never stored.

A direction is a dict-like object: for each perturbed parameter name it yields a float32 tensor
of the parameter's shape. Each tensor is drawn from N(0, 1) with a `torch.Generator` on the
weight's device, seeded from a stable hash of (seed, axis, parameter name), so it is the same in
every run and process and whatever other parameters are perturbed (CPU and CUDA generators draw
different numbers, so the device type is part of a result's provenance; generating on the
device keeps regeneration cheap next to a forward pass). Then:

- masked (optional): multiplied by a mask's keep bits, so a perturbation never revives a
  masked weight;
- normalised: `filter` (Li et al. 2018): every output row d_r is rescaled to the norm of the
  weight's row, d_r * |theta_r| / |d_r| (the output axis is 0, except for transformers' Conv1D
  whose weights are [in, out]); `tensor`: the whole tensor is rescaled to |theta|. 1-D
  parameters (biases, norm gains) are left out unless asked; when included they are
  normalised per tensor in both modes;
- orthogonalised (optional): d2 <- s * (d2 - c * d1) with c = <d1, d2> / <d1, d1> and s chosen
  so that |d2| is unchanged; c and s are global scalars found once with dot products computed
  tensor by tensor, so no full copy of a direction is ever held.

Parameters come from `model.named_parameters()`, which lists a tied weight once, so tied
embeddings are perturbed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mftlab.errors import ConfigError, TargetError
from mftlab.mft.targeting import TargetSpec, resolve_targets
from mftlab.options_meta import check_options, doc
from mftlab.seeding import name_generator

NORMALIZATIONS = ("filter", "tensor")


def gaussian(shape: tuple[int, ...], seed: int, axis: int, name: str, device="cpu") -> torch.Tensor:
    """N(0, 1) float32 tensor on `device` for (seed, axis, name)."""
    generator = name_generator(seed, int(axis), name, device=device)
    return torch.randn(shape, generator=generator, dtype=torch.float32, device=device)


ROWS_CHUNK = 1 << 20  # values of a 16-bit theta cast to float32 at a time, for its norms


def _row_norms(t: torch.Tensor) -> torch.Tensor:
    """Float32 norms of the rows of 2-D `t` (rows, rest); a 16-bit `t` is cast a block of rows at a
    time, so no float32 copy of the whole weight is made (the values equal those of t.float())."""
    if t.dtype == torch.float32:
        return t.norm(dim=1)
    step = max(1, ROWS_CHUNK // max(1, t.shape[1]))
    return torch.cat([t[r : r + step].float().norm(dim=1) for r in range(0, t.shape[0], step)])


def _norm(t: torch.Tensor) -> torch.Tensor:
    """Float32 norm of `t`, chunk by chunk for a 16-bit `t` (sum of squares in float64)."""
    if t.dtype == torch.float32:
        return t.norm()
    flat = t.reshape(-1)
    total = torch.zeros((), dtype=torch.float64, device=t.device)
    for s in range(0, flat.numel(), ROWS_CHUNK):
        total += flat[s : s + ROWS_CHUNK].float().norm().double().square()
    return total.sqrt().float()


def normalize_(direction: torch.Tensor, theta: torch.Tensor, mode: str, out_axis: int = 0) -> torch.Tensor:
    """Rescale `direction` in place to the norms of `theta` (rows for 'filter', whole for 'tensor').

    `theta` may be bf16 / fp16 (the pristine weights); its norms are computed in float32.
    """
    eps = 1e-12  # an all-zero (fully masked) row stays zero
    if mode == "tensor" or direction.dim() < 2:
        direction.mul_(_norm(theta) / (direction.norm() + eps))
        return direction
    d = direction.movedim(out_axis, 0).reshape(direction.shape[out_axis], -1)  # (rows, rest), a view
    t = theta.movedim(out_axis, 0).reshape(theta.shape[out_axis], -1)
    d.mul_((_row_norms(t) / (d.norm(dim=1) + eps)).unsqueeze(1))
    return direction


@dataclass(frozen=True)
class DirectionSpec:
    """How random directions are drawn. Serialised into every landscape result."""

    seed: int = 0
    normalization: str = field(
        default="filter",
        metadata=doc(
            "Scale random directions row by row (Li et al.) or per tensor to the weights.", choices=NORMALIZATIONS
        ),
    )
    include_1d: bool = field(default=False, metadata=doc("Also perturb 1-D parameters (biases, norm gains)."))
    orthogonalize: bool = field(
        default=False, metadata=doc("Make the second random direction orthogonal to the first.")
    )
    targets: TargetSpec | None = None  # None: every parameter with >= 2 dimensions

    def __post_init__(self):
        check_options(self, flag_words=True)  # normalization

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "normalization": self.normalization,
            "include_1d": self.include_1d,
            "orthogonalize": self.orthogonalize,
            "targets": self.targets.to_dict() if self.targets is not None else None,
        }


def perturbed_names(model: torch.nn.Module, spec: DirectionSpec) -> list[str]:
    """Names of the parameters a random plane perturbs (tied weights once), in model order."""
    params = dict(model.named_parameters())  # de-duplicates tied weights
    names = [n for n, p in params.items() if p.is_floating_point() and (p.dim() >= 2 or spec.include_1d)]
    if spec.targets is not None:
        targeted = {t.param_name for t in resolve_targets(model, spec.targets)}
        if spec.include_1d:  # biases and gains of the targeted modules come along
            targeted |= {n for n in names if n.rsplit(".", 1)[0] + ".weight" in targeted}
        names = [n for n in names if n in targeted]
    if not names:
        raise TargetError("no parameter is left to perturb; widen --targets or pass --include-1d")
    return names


class RandomDirections:
    """Two filter-normalised Gaussian directions over `names`, computed on demand per tensor.

    `theta0` maps each name to the pristine weight (the centre, in the model's dtype; directions
    are float32 whatever it is). `keep` optionally maps
    names to boolean keep-masks. With `cache=True` the two directions are kept after their first
    use (2 float32 copies of the perturbed weights) instead of being regenerated at every grid
    point (one `randn` per tensor and axis per point).
    """

    def __init__(
        self,
        spec: DirectionSpec,
        theta0: dict[str, torch.Tensor],
        out_axes: dict[str, int] | None = None,
        keep: dict[str, torch.Tensor] | None = None,
        cache: bool = False,
    ):
        self.spec = spec
        self.theta0 = theta0
        self.out_axes = out_axes or {}
        self.keep = keep or {}
        self.cache = {} if cache else None
        self.coef, self.scale = 0.0, 1.0  # d2 <- scale * (d2 - coef * d1)
        if spec.orthogonalize:
            self._find_orthogonalization()

    @property
    def names(self) -> list[str]:
        return list(self.theta0)

    def raw(self, name: str, axis: int) -> torch.Tensor:
        """Direction `axis` (0 or 1) for `name`, masked and normalised, before orthogonalisation."""
        theta = self.theta0[name]
        d = gaussian(tuple(theta.shape), self.spec.seed, axis, name, theta.device)
        if name in self.keep:
            d.mul_(self.keep[name].to(d.device))
        return normalize_(d, theta, self.spec.normalization, self.out_axes.get(name, 0))

    def pair(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(d1, d2) for one parameter, float32 on the centre's device."""
        if self.cache is not None and name in self.cache:
            return self.cache[name]
        d1, d2 = self.raw(name, 0), self.raw(name, 1)
        if self.spec.orthogonalize:
            d2 = (d2 - self.coef * d1).mul_(self.scale)
        if self.cache is not None:
            self.cache[name] = (d1, d2)
        return d1, d2

    def _find_orthogonalization(self) -> None:
        d11 = d12 = d22 = 0.0
        for name in self.names:  # dot products tensor by tensor, in float64 on the host
            d1, d2 = self.raw(name, 0), self.raw(name, 1)
            d11 += float(torch.dot(d1.flatten(), d1.flatten()).double())
            d12 += float(torch.dot(d1.flatten(), d2.flatten()).double())
            d22 += float(torch.dot(d2.flatten(), d2.flatten()).double())
        if d11 == 0.0 or d22 == 0.0:
            raise ConfigError("a random direction is zero (every perturbed weight masked?); change --targets")
        self.coef = d12 / d11
        residual = d22 - d12 * d12 / d11  # |d2 - c d1|^2
        self.scale = (d22 / residual) ** 0.5 if residual > 0 else 1.0

    def gram(self) -> tuple[float, float, float]:
        """(<d1,d1>, <d1,d2>, <d2,d2>) over every perturbed tensor, float64."""
        d11 = d12 = d22 = 0.0
        for name in self.names:
            d1, d2 = self.pair(name)
            d11 += float(torch.dot(d1.flatten(), d1.flatten()).double())
            d12 += float(torch.dot(d1.flatten(), d2.flatten()).double())
            d22 += float(torch.dot(d2.flatten(), d2.flatten()).double())
        return d11, d12, d22
