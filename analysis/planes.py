"""Planes (and lines) in weight space: theta(a, b) = theta0 + a * u + b * v, tensor by tensor.

Every plane keeps the pristine weights theta0 in the model's own dtype (a bf16 / fp16 / fp32
value is exact there, so restoring is bit-exact) and writes a grid point with `set_(name,
param, a, b)`: the point's weights are computed in float32 from what the plane holds, in chunks
of at most `chunk_elements(device)` values, then cast once to the parameter's dtype. So the
grid loop never holds a float32 copy of a model:

- `RandomPlane`: centred on one model; u, v are seeded random directions (see
  `mftlab.analysis.directions`), regenerated per tensor (transient: two float32 copies of one
  tensor) or cached. Memory: theta0 (one copy of the perturbed weights in the model's dtype),
  plus two float32 copies with `cache=True`.
- `ModelPlane`: the plane through three models A, B, C with orthonormal axes (Garipov et al.):
  u = (B - A) / |B - A|, v = the part of C - A orthogonal to u, normalised. A sits at (0, 0),
  B at (|B - A|, 0), C at (<C - A, u>, |C - A - <C - A, u> u|). The plane holds A (pristine),
  B and C in their own dtype, only for the parameters on which the models differ, and sets
  theta(x, y) = (1 - alpha - beta) A + alpha B + beta C with beta = y / |v-part|, alpha =
  (x - beta <C - A, u>) / |B - A| (the same point as A + x u + y v; at the three models the
  coefficients are exactly 0 and 1, so the vertices are the models bit for bit). Memory: three
  copies of the differing parameters in the model's dtype.
- `ModelLine`: the segment through two models, theta(t) = (1 - t) A + t B, so A is at t = 0
  and B at t = 1. Memory: two copies in the model's dtype.
- `ExplicitPlane`: caller-given direction dicts (tests, custom analyses).

`basis(name)` returns (theta0, u, v) materialised in float32 for one tensor (projections, tests).
Coordinates of a random plane are in units of its (filter-normalised) directions; coordinates
of a model plane are Euclidean distances in weight space.
"""

from __future__ import annotations

from typing import Iterable

import torch

from mftlab.analysis.directions import DirectionSpec, RandomDirections, perturbed_names
from mftlab.errors import ConfigError
from mftlab.mft.targeting import output_axes

CPU_CHUNK = 1 << 20  # float32 values per chunk: 4 MiB of transient on the host
GPU_CHUNK = 1 << 24  # 64 MiB on a GPU, where each chunk costs kernel launches


def chunk_elements(device: torch.device) -> int:
    return CPU_CHUNK if torch.device(device).type == "cpu" else GPU_CHUNK


def _pristine(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone()  # own dtype: exact


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.flatten(), b.flatten()).double())


def materialise(source) -> torch.nn.Module:
    """A model given as itself or as a zero-argument function that loads it (loaded only when needed)."""
    return source() if callable(source) and not isinstance(source, torch.nn.Module) else source


def _spans(n: int, step: int):
    for start in range(0, n, step):
        yield start, min(n, start + step)


@torch.no_grad()
def combine_(param: torch.Tensor, theta0: torch.Tensor, terms: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
    """param <- cast(sum_k c_k t_k) computed in float32, chunk by chunk; returns |param - theta0|^2.

    `terms` are (coefficient, tensor of param's shape, any float dtype); the squared realised
    perturbation (after the cast) is a 0-d float64 tensor on param's device (no host sync).
    """
    flat = param.detach().view(-1)  # parameters are contiguous
    base = theta0.reshape(-1)
    parts = [(float(c), t.detach().reshape(-1)) for c, t in terms if c != 0.0 or t is theta0]
    norm2 = torch.zeros((), dtype=torch.float64, device=param.device)
    for s, e in _spans(flat.numel(), chunk_elements(param.device)):
        (c0, t0), rest = parts[0], parts[1:]
        target = t0[s:e].to(torch.float32, copy=True)  # (chunk,) float32, never aliasing theta0
        if c0 != 1.0:
            target.mul_(c0)
        for c, t in rest:
            target.add_(t[s:e], alpha=c)
        flat[s:e].copy_(target)  # the one cast to the model's dtype
        target.copy_(flat[s:e]).sub_(base[s:e])  # realised perturbation
        norm2 += torch.dot(target, target).double()
    return norm2


def _differs(x: torch.Tensor, y: torch.Tensor) -> bool:
    if x.dtype == y.dtype:
        return not torch.equal(x, y)
    fx, fy = x.reshape(-1), y.reshape(-1)
    return any(
        bool((fx[s:e].float() != fy[s:e].float()).any()) for s, e in _spans(fx.numel(), chunk_elements(x.device))
    )


def check_same_architecture(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor], label: str) -> None:
    """Raise ConfigError unless `other` has exactly the parameters (names and shapes) of `reference`."""
    missing = [n for n in reference if n not in other]
    extra = [n for n in other if n not in reference]
    if missing or extra:
        name = (missing or extra)[0]
        raise ConfigError(
            f"model {label} has a different architecture: parameter '{name}' is "
            f"{'missing' if missing else 'unexpected'} ({len(missing)} missing, {len(extra)} extra); "
            "give models fine-tuned from the same base"
        )
    for n, t in reference.items():
        if tuple(other[n].shape) != tuple(t.shape):
            raise ConfigError(
                f"model {label} has a different architecture: '{n}' has shape {list(other[n].shape)} "
                f"instead of {list(t.shape)}; give models fine-tuned from the same base"
            )


class Plane:
    """Base: `names` moved, `pristine(name)`, `set_(name, param, a, b)`, `basis(name)`, and the
    coordinates of the models that define it."""

    kind = "plane"
    dims = 2

    def __init__(self):
        self.names: list[str] = []
        self.model_coords: list[tuple[float, float]] = []
        self.theta0: dict[str, torch.Tensor] = {}  # pristine weights, model dtype

    def pristine(self, name: str) -> torch.Tensor:
        return self.theta0[name]

    def set_(self, name: str, param: torch.Tensor, a: float, b: float) -> torch.Tensor:
        """Write cast(theta(a, b)) into `param`; return the squared realised perturbation (0-d)."""
        raise NotImplementedError

    def basis(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(theta0, u, v) of one tensor in float32 (v None on a line)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "dims": self.dims, "tensors": len(self.names)}


AUTO_CACHE_LIMIT = 1 << 27  # perturbed weights up to which random directions are cached by default


class RandomPlane(Plane):
    """Two seeded random directions around `model` (or one, with `dims=1`)."""

    kind = "random"

    def __init__(
        self,
        model: torch.nn.Module,
        spec: DirectionSpec,
        keep: dict[str, torch.Tensor] | None = None,
        cache: bool | None = None,
        dims: int = 2,
    ):
        super().__init__()
        params = dict(model.named_parameters())
        self.names = perturbed_names(model, spec)
        self.dims = dims
        self.theta0 = {n: _pristine(params[n]) for n in self.names}
        if cache is None:  # auto: cache while the two fp32 copies stay small (1 GiB at the limit)
            cache = sum(t.numel() for t in self.theta0.values()) <= AUTO_CACHE_LIMIT
        self.directions = RandomDirections(spec, self.theta0, output_axes(model), keep, cache)
        self.model_coords = [(0.0, 0.0)]

    def basis(self, name):
        theta0 = self.theta0[name].float()
        if self.dims == 1:
            return theta0, self.directions.raw(name, 0), None
        d1, d2 = self.directions.pair(name)
        return theta0, d1, d2

    def set_(self, name, param, a, b):
        theta0, dirs = self.theta0[name], self.directions
        if self.dims == 1:
            return combine_(param, theta0, [(1.0, theta0), (a, dirs.raw(name, 0))])
        if dirs.cache is not None or not dirs.spec.orthogonalize:
            d1, d2 = dirs.pair(name)
            return combine_(param, theta0, [(1.0, theta0), (a, d1), (b, d2)])
        # Regenerated and orthogonalised: d2' = s (d2 - c d1), folded into the coefficients so that
        # no third float32 tensor is made: theta0 + (a - b s c) d1 + b s d2.
        d1, d2 = dirs.raw(name, 0), dirs.raw(name, 1)
        return combine_(param, theta0, [(1.0, theta0), (a - b * dirs.scale * dirs.coef, d1), (b * dirs.scale, d2)])

    def project(self, other: torch.nn.Module, centre: torch.nn.Module) -> dict:
        """Least-squares coordinates of `other` in (d1, d2) and its distance from the plane.

        The residual counts every parameter, including those the plane does not move, so a
        model that differs from the centre off the plane is never shown as lying on it.
        """
        ref = dict(centre.named_parameters())
        theirs = dict(other.named_parameters())
        check_same_architecture(ref, theirs, "given with --model")
        moved = set(self.names)
        g11 = g12 = g22 = r1 = r2 = delta2 = 0.0
        for name in self.names:
            theta0, d1, d2 = self.basis(name)
            delta = theirs[name].detach().float() - theta0
            g11 += _dot(d1, d1)
            r1 += _dot(d1, delta)
            delta2 += _dot(delta, delta)
            if d2 is not None:
                g12, g22, r2 = g12 + _dot(d1, d2), g22 + _dot(d2, d2), r2 + _dot(d2, delta)
        outside2 = sum(
            _dot(d, d)
            for n, p in ref.items()
            if n not in moved
            for d in [theirs[n].detach().float() - p.detach().float()]
        )
        if self.dims == 1:
            x, y = r1 / g11, 0.0
            in_plane2 = x * x * g11
        else:
            det = g11 * g22 - g12 * g12
            x, y = (g22 * r1 - g12 * r2) / det, (g11 * r2 - g12 * r1) / det
            in_plane2 = x * r1 + y * r2  # |projection|^2 for least squares
        residual2 = max(delta2 - in_plane2, 0.0) + outside2
        total2 = delta2 + outside2
        return {
            "x": x,
            "y": y,
            "distance": total2**0.5,
            "off_plane_distance": residual2**0.5,
            "off_plane_relative": (residual2 / total2) ** 0.5 if total2 > 0 else 0.0,
        }


def _other_weights(params: dict[str, torch.Tensor], source, label: str) -> dict[str, torch.Tensor]:
    """The floating-point weights of model `source` (loaded now if a loader), on params' devices."""
    other = dict(materialise(source).named_parameters())
    check_same_architecture(params, other, label)
    return {n: other[n].detach().to(params[n].device) for n in params if params[n].is_floating_point()}


class ModelPlane(Plane):
    """The plane through models A (live, at the origin), B and C; B and C may be loaders."""

    kind = "models"

    def __init__(self, model_a: torch.nn.Module, model_b, model_c):
        super().__init__()
        params = {n: p.detach() for n, p in model_a.named_parameters()}
        b = _other_weights(params, model_b, "2")
        c = _other_weights(params, model_c, "3")
        self.names = [n for n in b if _differs(b[n], params[n]) or _differs(c[n], params[n])]
        self.b = {n: b[n] for n in self.names}  # the rest is dropped with the models
        self.c = {n: c[n] for n in self.names}
        del b, c
        self.theta0 = {n: _pristine(params[n]) for n in self.names}
        n11, n21 = self._dots(lambda e1, e2: (torch.dot(e1, e1), torch.dot(e2, e1)))
        n1 = float(n11) ** 0.5
        if n1 == 0.0:
            raise ConfigError("models 1 and 2 have identical weights; a plane needs three different models")
        proj = float(n21) / n1  # <C - A, u>

        # Gram-Schmidt residual |C - A - <C - A, u> u|^2, chunk by chunk (never a whole fp32 copy).
        def residual(e1, e2):
            r = e2.sub_(e1.div_(n1), alpha=proj)  # as before: u = e1 / n1, then e2 - proj u
            return (torch.dot(r, r),)

        (r2,) = self._dots(residual)
        n2 = float(r2) ** 0.5
        if n2 <= 1e-4 * max(n1, abs(proj)):  # float32 rounding leaves ~1e-7 of a collinear C
            raise ConfigError("the three models lie on one line in weight space; give three models that span a plane")
        self.n1, self.proj, self.n2 = n1, proj, n2
        self.model_coords = [(0.0, 0.0), (n1, 0.0), (proj, n2)]

    def _dots(self, fn) -> tuple:
        """Sum over tensors and chunks of fn(B - A, C - A) (float32 chunks), accumulated in float64."""
        sums = None
        for n in self.names:
            a, b, c = (t.reshape(-1) for t in (self.theta0[n], self.b[n], self.c[n]))
            for s, e in _spans(a.numel(), chunk_elements(a.device)):
                e1 = b[s:e].to(torch.float32, copy=True).sub_(a[s:e])
                e2 = c[s:e].to(torch.float32, copy=True).sub_(a[s:e])
                values = [v.double() for v in fn(e1, e2)]
                sums = values if sums is None else [x + v for x, v in zip(sums, values)]
        if sums is None:
            raise ConfigError("the three models have identical weights; a plane needs three different models")
        return tuple(sums)

    def coefficients(self, x: float, y: float) -> tuple[float, float]:
        """(alpha, beta) with A + x u + y v = (1 - alpha - beta) A + alpha B + beta C; exact 0 / 1 at the models."""
        beta = y / self.n2
        return (x - beta * self.proj) / self.n1, beta

    def set_(self, name, param, a, b):
        alpha, beta = self.coefficients(a, b)
        theta0 = self.theta0[name]
        return combine_(param, theta0, [(1.0 - alpha - beta, theta0), (alpha, self.b[name]), (beta, self.c[name])])

    def basis(self, name):
        theta0 = self.theta0[name].float()
        u = (self.b[name].float() - theta0).div_(self.n1)
        v = (self.c[name].float() - theta0).sub_(u, alpha=self.proj).div_(self.n2)
        return theta0, u, v


class ModelLine(Plane):
    """Linear interpolation (1 - t) A + t B: A at t = 0, B at t = 1."""

    kind = "line"
    dims = 1

    def __init__(self, model_a: torch.nn.Module, model_b):
        super().__init__()
        params = {n: p.detach() for n, p in model_a.named_parameters()}
        b = _other_weights(params, model_b, "2")
        self.names = [n for n in b if _differs(b[n], params[n])]
        if not self.names:
            raise ConfigError("the two models have identical weights; give two different models")
        self.b = {n: b[n] for n in self.names}
        del b
        self.theta0 = {n: _pristine(params[n]) for n in self.names}
        self.model_coords = [(0.0, 0.0), (1.0, 0.0)]

    def set_(self, name, param, a, b):
        theta0 = self.theta0[name]
        return combine_(param, theta0, [(1.0 - a, theta0), (a, self.b[name])])

    def basis(self, name):
        theta0 = self.theta0[name].float()
        return theta0, self.b[name].float() - theta0, None


class ExplicitPlane(Plane):
    """theta0 + a u + b v with caller-given direction dicts (name -> tensor of the parameter's shape)."""

    kind = "explicit"

    def __init__(self, model: torch.nn.Module, u: dict[str, torch.Tensor], v: dict[str, torch.Tensor] | None = None):
        super().__init__()
        params = dict(model.named_parameters())
        unknown = [n for n in list(u) + list(v or {}) if n not in params]
        if unknown:
            raise ConfigError(f"direction names parameter '{unknown[0]}', which the model does not have")
        self.names = list(dict.fromkeys(list(u) + list(v or {})))
        self.dims = 1 if v is None else 2
        self.theta0 = {n: _pristine(params[n]) for n in self.names}
        zero = {n: torch.zeros(self.theta0[n].shape, device=self.theta0[n].device) for n in self.names}
        self.u = {n: u[n].float().to(self.theta0[n].device) if n in u else zero[n] for n in self.names}
        self.v = (
            None
            if v is None
            else {n: v[n].float().to(self.theta0[n].device) if n in v else zero[n] for n in self.names}
        )
        self.model_coords = [(0.0, 0.0)]

    def set_(self, name, param, a, b):
        theta0 = self.theta0[name]
        terms = [(1.0, theta0), (a, self.u[name])] + ([(b, self.v[name])] if self.v is not None else [])
        return combine_(param, theta0, terms)

    def basis(self, name):
        return self.theta0[name].float(), self.u[name], None if self.v is None else self.v[name]


def linspace(lo: float, hi: float, n: int) -> tuple[float, ...]:
    """n evenly spaced floats from lo to hi inclusive (computed in float64, exact end points)."""
    if n == 1:
        return (float(lo),)
    return tuple(float(lo + (hi - lo) * i / (n - 1)) for i in range(n))


def margin_ranges(coords: Iterable[tuple[float, float]], margin: float, dims: int = 2):
    """Axis ranges covering `coords` with `margin` times their extent added on each side."""
    xs, ys = zip(*coords)
    dx, dy = max(xs) - min(xs), max(ys) - min(ys)
    xr = (min(xs) - margin * dx, max(xs) + margin * dx)
    yr = (min(ys) - margin * dy, max(ys) + margin * dy) if dims == 2 else (0.0, 0.0)
    return xr, yr
