"""Planes (and lines) in weight space: theta(a, b) = theta0 + a * u + b * v, tensor by tensor.

Every plane answers `basis(name) -> (theta0, u, v)` in float32 for each parameter it moves
(`v` is None on a line), so the grid loop never needs a whole second model:

- `RandomPlane`: centred on one model; u, v are seeded random directions (see
  `mftlab.analysis.directions`), regenerated per tensor or cached. Memory: one float32 copy
  of the perturbed weights (theta0), plus two more with `cache=True`.
- `ModelPlane`: the plane through three models A, B, C with orthonormal axes (Garipov et al.):
  u = (B - A) / |B - A|, v = the part of C - A orthogonal to u, normalised. A sits at (0, 0),
  B at (|B - A|, 0), C at (<C - A, u>, |C - A - <C - A, u> u|). B and C are read one at a time
  and dropped, so memory is the live model A plus three float32 copies (theta0, u, v) of the
  parameters on which the models differ.
- `ModelLine`: the segment through two models, u = B - A, so A is at t = 0 and B at t = 1.
- `ExplicitPlane`: caller-given direction dicts (tests, custom analyses).

Coordinates of a random plane are in units of its (filter-normalised) directions; coordinates
of a model plane are Euclidean distances in weight space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from mftlab.analysis.directions import DirectionSpec, RandomDirections, output_axes, perturbed_names
from mftlab.errors import ConfigError

def _fp32_copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32, copy=True)


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.flatten(), b.flatten()).double())


def _materialise(source) -> torch.nn.Module:
    return source() if callable(source) and not isinstance(source, torch.nn.Module) else source


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
    """Base: `names` moved, `basis(name)`, and the coordinates of the models that define it."""

    kind = "plane"
    dims = 2

    def __init__(self):
        self.names: list[str] = []
        self.model_coords: list[tuple[float, float]] = []

    def basis(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "dims": self.dims, "tensors": len(self.names)}


AUTO_CACHE_LIMIT = 1 << 27  # perturbed weights up to which random directions are cached by default


class RandomPlane(Plane):
    """Two seeded random directions around `model` (or one, with `dims=1`)."""

    kind = "random"

    def __init__(self, model: torch.nn.Module, spec: DirectionSpec, keep: dict[str, torch.Tensor] | None = None,
                 cache: bool | None = None, dims: int = 2):
        super().__init__()
        params = dict(model.named_parameters())
        self.names = perturbed_names(model, spec)
        self.dims = dims
        theta0 = {n: _fp32_copy(params[n]) for n in self.names}
        if cache is None:  # auto: cache while the two fp32 copies stay small (1 GiB at the limit)
            cache = sum(t.numel() for t in theta0.values()) <= AUTO_CACHE_LIMIT
        self.directions = RandomDirections(spec, theta0, output_axes(model), keep, cache)
        self.model_coords = [(0.0, 0.0)]

    def basis(self, name):
        theta0 = self.directions.theta0[name]
        if self.dims == 1:
            return theta0, self.directions.raw(name, 0), None
        d1, d2 = self.directions.pair(name)
        return theta0, d1, d2

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
            delta = theirs[name].detach().float() - self.directions.theta0[name]
            d1, d2 = self.basis(name)[1:]
            g11 += _dot(d1, d1)
            r1 += _dot(d1, delta)
            delta2 += _dot(delta, delta)
            if d2 is not None:
                g12, g22, r2 = g12 + _dot(d1, d2), g22 + _dot(d2, d2), r2 + _dot(d2, delta)
        outside2 = sum(_dot(d, d) for n, p in ref.items() if n not in moved
                       for d in [theirs[n].detach().float() - p.detach().float()])
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
            "x": x, "y": y,
            "distance": total2 ** 0.5,
            "off_plane_distance": residual2 ** 0.5,
            "off_plane_relative": (residual2 / total2) ** 0.5 if total2 > 0 else 0.0,
        }


class ModelPlane(Plane):
    """The plane through models A (live, at the origin), B and C; B and C may be loaders."""

    kind = "models"

    def __init__(self, model_a: torch.nn.Module, model_b, model_c):
        super().__init__()
        params = dict(model_a.named_parameters())
        diffs: list[dict[str, torch.Tensor]] = []
        for label, source in (("2", model_b), ("3", model_c)):
            other = dict(_materialise(source).named_parameters())
            check_same_architecture(params, other, label)
            diffs.append({n: other[n].detach().float() - params[n].detach().float()
                          for n in params if params[n].is_floating_point()})
            del other  # only the difference is kept
        self.names = [n for n in diffs[0] if diffs[0][n].any() or diffs[1][n].any()]
        e1 = {n: diffs[0][n] for n in self.names}
        e2 = {n: diffs[1][n] for n in self.names}
        n1 = sum(_dot(t, t) for t in e1.values()) ** 0.5
        if n1 == 0.0:
            raise ConfigError("models 1 and 2 have identical weights; a plane needs three different models")
        c = sum(_dot(e2[n], e1[n]) for n in self.names) / n1  # <C - A, u>
        for n in self.names:  # Gram-Schmidt, tensor by tensor, in place
            e1[n].div_(n1)
            e2[n].sub_(e1[n], alpha=c)
        n2 = sum(_dot(t, t) for t in e2.values()) ** 0.5
        if n2 <= 1e-4 * max(n1, abs(c)):  # float32 rounding leaves ~1e-7 of a collinear C
            raise ConfigError("the three models lie on one line in weight space; give three models that span a plane")
        for t in e2.values():
            t.div_(n2)
        self.theta0 = {n: _fp32_copy(params[n]) for n in self.names}
        self.u, self.v = e1, e2
        self.model_coords = [(0.0, 0.0), (n1, 0.0), (c, n2)]

    def basis(self, name):
        return self.theta0[name], self.u[name], self.v[name]


class ModelLine(Plane):
    """Linear interpolation theta0 + t (B - A): A at t = 0, B at t = 1."""

    kind = "line"
    dims = 1

    def __init__(self, model_a: torch.nn.Module, model_b):
        super().__init__()
        params = dict(model_a.named_parameters())
        other = dict(_materialise(model_b).named_parameters())
        check_same_architecture(params, other, "2")
        self.u = {}
        for n, p in params.items():
            if p.is_floating_point() and not torch.equal(other[n].detach().float(), p.detach().float()):
                self.u[n] = other[n].detach().float() - p.detach().float()
        if not self.u:
            raise ConfigError("the two models have identical weights; give two different models")
        self.names = list(self.u)
        self.theta0 = {n: _fp32_copy(params[n]) for n in self.names}
        self.model_coords = [(0.0, 0.0), (1.0, 0.0)]

    def basis(self, name):
        return self.theta0[name], self.u[name], None


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
        self.theta0 = {n: _fp32_copy(params[n]) for n in self.names}
        zero = {n: torch.zeros_like(self.theta0[n]) for n in self.names}
        self.u = {n: u[n].float().to(self.theta0[n].device) if n in u else zero[n] for n in self.names}
        self.v = None if v is None else {n: v[n].float().to(self.theta0[n].device) if n in v else zero[n]
                                         for n in self.names}
        self.model_coords = [(0.0, 0.0)]

    def basis(self, name):
        return self.theta0[name], self.u[name], None if self.v is None else self.v[name]


@dataclass(frozen=True)
class Axes:
    """Grid coordinates: xs (nx,), ys (ny,); ny == 1 with ys == (0,) is a line."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]


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
