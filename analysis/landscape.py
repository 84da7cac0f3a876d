"""Loss landscapes: evaluate the token-weighted loss on a grid over a plane (or line) in weight space.

Layout of every result (stated in `landscape.npz` as `layout` too): losses have shape
(len(ys), len(xs)) like matplotlib's Z, so `train_loss[j, i]` is the loss at (xs[i], ys[j]);
grid point number k = j * len(xs) + i. A line has ys == [0.0].

For each point the perturbed weights are set to theta0 + a*u + b*v, computed in float32 chunk by
chunk from the pristine weights (kept in the model's dtype, see `planes`) and then cast to the
model's dtype (never by cumulative add and subtract), and the realised perturbation norm
|theta(a, b) - theta0| (after the cast) is recorded. Both losses come from
`mftlab.training.evaluation.loss_sums` over data tokenised once and kept on the device (see
`landscape_data`). Every finished point is appended to the run's store (see `landscape_store`) with
the rank that computed it, so a killed run resumes where it stopped; several processes deal the
points still to do (in point order, `todo[rank::world_size]`), so after any kill each has the same
number left (+-1), and process 0 merges them. The model's weights are restored bit-exactly
afterwards, whatever happens.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from mftlab.analysis.directions import DirectionSpec
from mftlab.analysis.landscape_data import (  # noqa: F401 - the data helpers, importable from here as before
    EvalData,
    prepare_data,
    select_tokens,
)
from mftlab.analysis.landscape_result import LandscapeResult, assemble_result, finite_or_none
from mftlab.analysis.landscape_store import PointStore
from mftlab.analysis.planes import (
    ExplicitPlane,
    ModelLine,
    ModelPlane,
    Plane,
    RandomPlane,
    linspace,
    margin_ranges,
    materialise,
)
from mftlab.errors import ConfigError, MaskMismatchError
from mftlab.mask.fingerprint import combined_fingerprint, tensor_fingerprint
from mftlab.options_meta import check_options, doc
from mftlab.training.evaluation import LossSums, loss_sums

PLANES = ("random", "models", "line")
MODELS_NEEDED = {"models": 3, "line": 2}
Progress = Callable[[str, dict], None]


# -- options ------------------------------------------------------------------------------------
def parse_range(text: str | None) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """'-1:1' (both axes) or '-1:1,-0.5:0.5' (x, then y) -> ((xlo, xhi), (ylo, yhi))."""
    if text is None or str(text).strip() == "":
        return None
    pairs = []
    for part in str(text).split(","):
        bits = part.strip().split(":")
        try:
            lo, hi = (float(b) for b in bits)
        except ValueError:
            raise ConfigError(f"--range '{text}': '{part}' is not LO:HI; write e.g. -1:1 or -1:1,-0.5:0.5") from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            raise ConfigError(f"--range '{text}': '{part}' is empty or not finite; write the smaller number first")
        pairs.append((lo, hi))
    if len(pairs) > 2:
        raise ConfigError(f"--range '{text}' has {len(pairs)} ranges; give one (both axes) or two (x,y)")
    return (pairs[0], pairs[-1])


@dataclass(frozen=True)
class LandscapeConfig:
    """What a landscape run computes. Serialised into landscape.json; `--resume` must match it."""

    plane: str = field(
        default="random",
        metadata=doc(
            "random directions around the first model, the plane through three models, or the line through two.",
            choices=PLANES,
        ),
    )
    grid: tuple[int, int] = field(
        default=(21, 21),
        metadata=doc(  # (nx, ny); ny == 1 is a line
            "Points per axis NXxNY (non-square allowed); N alone is a 1-D line.", text="21x21"
        ),
    )
    ranges: tuple[tuple[float, float], tuple[float, float]] | None = field(
        default=None,
        metadata=doc(
            "LO:HI for both axes or LO:HI,LO:HI for x,y. Default: -1:1 (random), models plus --margin (models, line).",
            flag="--range",
        ),
    )
    directions: DirectionSpec = field(default_factory=DirectionSpec)
    margin: float = field(default=0.2, metadata=doc("Margin around the models, as a fraction of their extent."))
    cache_directions: bool | None = field(
        default=None,
        metadata=doc(  # True: keep, False: regenerate, None: auto
            "Keep random directions in memory (2 float32 copies) or regenerate them per point. "
            "Default: cache up to 134M perturbed weights (1 GiB), regenerate beyond.",
            flag="--cache-directions/--regenerate-directions",
        ),
    )

    @classmethod
    def from_options(
        cls,
        plane: str,
        grid: str,
        ranges: str | None,
        margin: float,
        *,
        seed: int,
        normalization: str,
        include_1d: bool,
        orthogonalize: bool,
        targets: str | None = None,
        layers: str | None = None,
        exclude: str | None = None,
        cache_directions: bool | None = None,
    ) -> "LandscapeConfig":
        """The config from option text as `mftlab landscape` and `mftlab.landscape` take it ('21x21', '-1:1')."""
        from mftlab.grid import parse_grid
        from mftlab.mft.targeting import TargetSpec

        target = TargetSpec.parse(targets, layers, exclude) if (targets or layers or exclude) else None
        directions = DirectionSpec(seed, normalization, include_1d, orthogonalize, target)
        return cls(plane, parse_grid(grid), parse_range(ranges), directions, margin, cache_directions)

    def __post_init__(self):
        check_options(self, flag_words=True)  # plane
        nx, ny = self.grid
        if nx < 1 or ny < 1:
            raise ConfigError(f"--grid {nx}x{ny} is empty; use e.g. 21x21")
        if self.plane == "line" and ny != 1:
            raise ConfigError(f"--plane line is 1-D but --grid is {nx}x{ny}; write --grid {nx}")
        if not 0.0 <= self.margin <= 10.0:
            raise ConfigError(f"--margin {self.margin} is outside [0, 10]; use e.g. 0.2")

    @property
    def dims(self) -> int:
        return 1 if self.grid[1] == 1 else 2

    def to_dict(self) -> dict:
        return {
            "plane": self.plane,
            "grid": list(self.grid),
            "ranges": [list(r) for r in self.ranges] if self.ranges else None,
            "directions": self.directions.to_dict(),
            "margin": self.margin,
        }


def model_fingerprint(model: torch.nn.Module) -> str:
    return combined_fingerprint({n: tensor_fingerprint(p) for n, p in model.named_parameters()})


# -- one point ----------------------------------------------------------------------------------
@torch.no_grad()
def set_point_(params: dict[str, torch.Tensor], plane: Plane, a: float, b: float) -> float:
    """Set every moved weight to cast(theta0 + a u + b v); return the realised |theta - theta0|."""
    norm2 = None  # accumulated on the device: one host sync per point, not per tensor
    for name in plane.names:
        d2 = plane.set_(name, params[name], a, b)  # float32 per chunk, from the pristine weights every time
        norm2 = d2 if norm2 is None else norm2 + d2
    return math.sqrt(float(norm2)) if norm2 is not None else 0.0


@torch.no_grad()
def restore_(params: dict[str, torch.Tensor], plane: Plane) -> None:
    """Put back the pristine weights (exact: the plane keeps them in their own dtype)."""
    for name in plane.names:
        params[name].copy_(plane.pristine(name))


# -- the grid loop ------------------------------------------------------------------------------
def _sums_record(s: LossSums) -> list:
    return [s.nll, s.tokens, s.correct]


def _evaluate(model, params, plane, point, *, train: EvalData, test: EvalData) -> dict:
    i, a, b = point
    started = time.perf_counter()
    norm = set_point_(params, plane, a, b)
    tr, te = loss_sums(model, train.batches), loss_sums(model, test.batches)
    return {
        "i": i,
        "x": a,
        "y": b,
        "train": _sums_record(tr),
        "test": _sums_record(te),
        "norm": norm,
        "seconds": time.perf_counter() - started,
    }


def _grid_points(xs, ys, markers: list[dict]) -> list[tuple[int, float, float]]:
    """(k, x, y) of every point: the grid, k = j * len(xs) + i, then one point per marker."""
    nx, grid = len(xs), len(xs) * len(ys)
    points = [(k, float(xs[k % nx]), float(ys[k // nx])) for k in range(grid)]
    return points + [(grid + m, float(mk["x"]), float(mk["y"])) for m, mk in enumerate(markers)]


def _run_record(check: dict | None, info: dict | None, xs, ys, marker_points: list) -> dict:
    """landscape.run.json: what `--resume` must match (`check`, the axes and the markers), then `info`."""
    return {
        "check": {
            **(check or {}),
            "axes": {"xs": list(map(float, xs)), "ys": list(map(float, ys))},
            "markers": [[p[1], p[2]] for p in marker_points],
        },
        **(info or {}),
    }


def _open_run(store: PointStore, run: dict, resume: bool, rank: int, barrier: Callable[[], None]) -> dict[int, dict]:
    """Check the run on every process, write it on process 0; the points already done (the same on every process)."""
    store.check_run(run, resume)
    os.makedirs(store.out_dir, exist_ok=True)
    barrier()  # every process checked before process 0 writes anything
    if rank == 0:
        store.write_run(run)
    barrier()  # the run file is written before anyone goes on
    return store.done()


def _compute_points(model, plane: Plane, mine: list, *, train: EvalData, test: EvalData, store, progress) -> int:
    """Evaluate this process's points, each appended to its shard when done; the weights are always restored."""
    params = dict(model.named_parameters())
    store.open()
    try:
        for n, point in enumerate(mine):
            record = {**_evaluate(model, params, plane, point, train=train, test=test), "rank": store.rank}
            store.append(record)
            if n == 0:
                progress(
                    "estimate",
                    {
                        "seconds_per_point": record["seconds"],
                        "points": len(mine),
                        "tokens_per_point": train.tokens + test.tokens,
                        "seconds": record["seconds"] * len(mine),
                    },
                )
            progress("point", {"done": n + 1, "total": len(mine), "x": point[1], "y": point[2]})
    finally:
        store.close()
        restore_(params, plane)
    return len(mine)


def compute_landscape(
    model: torch.nn.Module,
    plane: Plane,
    *,
    train: EvalData,
    test: EvalData,
    xs,
    ys,
    out_dir: str | os.PathLike,
    markers: list[dict] | None = None,
    check: dict | None = None,
    info: dict | None = None,
    resume: bool = False,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
    progress: Progress | None = None,
) -> LandscapeResult | None:
    """Evaluate `plane` on the grid xs x ys (plus one point per marker) and write the results.

    `markers`: [{"label", "x", "y", ...}] points evaluated besides the grid (the models).
    `check`: what must match for `--resume` (config, fingerprints, data hashes, dtype, device);
    `info`: extra provenance. Returns the merged result on process 0 (None elsewhere).
    """
    out_dir = os.fspath(out_dir)
    markers = [dict(m) for m in (markers or [])]
    barrier = barrier or (lambda: None)
    progress = progress or (lambda kind, data: None)
    points = _grid_points(xs, ys, markers)
    run = _run_record(check, info, xs, ys, points[len(xs) * len(ys) :])
    store = PointStore(out_dir, rank)
    done = _open_run(store, run, resume, rank, barrier)
    # Deal what is left rather than fixing points by k % world_size: after a partial run that would
    # leave one process most of the work and the others idle in the final barrier. The deal needs
    # every process to see the same `done`, hence the barriers around the read.
    todo = [p for p in points if p[0] not in done]
    mine = todo[rank::world_size]
    barrier()  # every process has read the shards before anyone appends to its own
    progress(
        "start",
        {"points": len(points), "done": len(done), "todo_here": len(mine), "tokens": train.tokens + test.tokens},
    )
    computed = _compute_points(model, plane, mine, train=train, test=test, store=store, progress=progress)
    barrier()
    result = None
    if rank == 0:
        result = assemble_result(store.done(), xs=xs, ys=ys, markers=markers, out_dir=out_dir, run=run)
        result.computed = computed
    barrier()
    return result


# -- building planes from models ---------------------------------------------------------------
def mask_keep(model: torch.nn.Module, mask, force: bool = False) -> dict[str, torch.Tensor]:
    """Keep-bits of `mask` for `model`, checked: names and shapes must fit; a fingerprint mismatch
    is accepted when the model's masked weights are all zero (a merged MFT model), else needs force."""
    params = dict(model.named_parameters(remove_duplicate=False))
    mismatched = mask.check_fits(params, force=True)
    keep = {name: mask.keep(name, params[name].device) for name in mask.names}
    for name in mismatched:
        if not force and bool((params[name].detach()[~keep[name]] != 0).any()):
            raise MaskMismatchError(
                f"--mask-directions: weights of '{name}' differ from the mask's base and are not zero where the "
                f"mask masks them ({len(mismatched)} tensors differ); use the mask of this model or pass --force"
            )
    return keep


def mask_hash(mask) -> str:
    """Hash of a mask's bits (names, shapes and packed values)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(mask.names):
        digest.update(f"{name}{list(mask.shapes[name])}".encode())
        digest.update(np.ascontiguousarray(mask.packed[name]).tobytes())
    return "blake2b:" + digest.hexdigest()


def resolve_axes(config: LandscapeConfig, coords: list[tuple[float, float]]):
    """xs, ys from --grid and --range (or the plane's default: +-1 for random, widened to cover
    projected models, and the models plus margins for a models plane or line)."""
    nx, ny = config.grid
    if config.ranges is not None:
        (xr, yr) = config.ranges
    elif config.plane == "random":  # +-1, widened to show projected models
        (x0, x1), (y0, y1) = margin_ranges(coords, config.margin, config.dims)
        xr, yr = (min(-1.0, x0), max(1.0, x1)), (min(-1.0, y0), max(1.0, y1))
    else:
        xr, yr = margin_ranges(coords, config.margin, config.dims)
    ys = linspace(*yr, ny) if ny > 1 else (0.0,)
    return linspace(*xr, nx), ys


def _check_model_count(config: LandscapeConfig, count: int) -> None:
    need = MODELS_NEEDED.get(config.plane)
    if need is not None and count != need:
        raise ConfigError(f"--plane {config.plane} needs exactly {need} models, got {count}; give --model {need} times")
    if config.plane == "models" and config.dims != 2:
        raise ConfigError(f"--plane models needs a 2-D --grid such as 21x21, got {config.grid[0]}x{config.grid[1]}")


def _marker_labels(config: LandscapeConfig, labels: list[str] | None, count: int) -> list[str]:
    """The labels given, then 'centre' for a random plane's first model and 'model K' for the rest."""
    labels = list(labels or [])
    return labels + [
        "centre" if k == 0 and config.plane == "random" else f"model {k + 1}" for k in range(len(labels), count)
    ]


def _random_plane(config: LandscapeConfig, live, loaders: list, keep, data: tuple[EvalData, EvalData]):
    """Random directions around `live`, the other models projected onto them (one loaded at a time),
    each with its own losses; returns the plane, every model's coordinates and its marker fields."""
    plane = RandomPlane(live, config.directions, keep, config.cache_directions, config.dims)
    rows: list[dict] = [{}]
    for load in loaders:
        other = load()
        row = plane.project(other, live)
        for split, split_data in zip(("train", "test"), data):
            row[f"{split}_loss_own"] = finite_or_none(loss_sums(other, split_data.batches).loss)
        rows.append(row)
        del other  # dropped before the next one is loaded
    return plane, [(0.0, 0.0)] + [(r["x"], r["y"]) for r in rows[1:]], rows


def _plane_through(config: LandscapeConfig, models: list, prints: list[str], keep, data: tuple[EvalData, EvalData]):
    """The plane (or line) of `config.plane` with every model's coordinates and marker fields; the
    fingerprint of every model materialised is appended to `prints`."""

    def tracked(source):
        def load():
            m = materialise(source)
            prints.append(model_fingerprint(m))
            return m

        return load

    live = models[0]
    if config.plane == "random":
        return _random_plane(config, live, [tracked(source) for source in models[1:]], keep, data)
    if config.plane == "models":
        plane = ModelPlane(live, tracked(models[1]), tracked(models[2]))
    else:
        plane = ModelLine(live, tracked(models[1]))
    return plane, plane.model_coords, [{} for _ in models]


def _resume_check(config: LandscapeConfig, live, *, models: list[dict], mask_directions, data) -> dict:
    """What a `--resume` must match: config, models, mask, data hashes, and the dtype and device computed in."""
    p0 = next(iter(dict(live.named_parameters()).values()))
    return {
        "config": config.to_dict(),
        "models": models,
        "mask_directions": mask_hash(mask_directions) if mask_directions is not None else None,
        "data": {"train": data[0].to_dict(), "test": data[1].to_dict()},
        "dtype": str(p0.dtype).replace("torch.", ""),
        "device": p0.device.type,
    }


def loss_landscape(
    models: list,
    train: EvalData,
    test: EvalData,
    config: LandscapeConfig,
    out_dir: str | os.PathLike,
    *,
    labels: list[str] | None = None,
    mask_directions=None,
    force: bool = False,
    info: dict | None = None,
    resume: bool = False,
    rank: int = 0,
    world_size: int = 1,
    barrier=None,
    progress: Progress | None = None,
) -> LandscapeResult | None:
    """The landscape of `config.plane` around / through `models`, written to `out_dir`.

    `models[0]` is an in-memory model, the one evaluated (perturbed, then restored exactly). Later
    entries may be models or zero-argument loaders, materialised one at a time and dropped:
    - random: models[1:] are projected onto the plane (coordinates and off-plane distance);
    - models: exactly three (e.g. FFT upper bound, continued FFT, MFT); the plane through them;
    - line: exactly two; the segment between them (and beyond, by the margin).
    `mask_directions` (a Mask) restricts random directions to its kept weights.
    `rank`, `world_size`, `barrier`: this process's place in a launch (see `compute_landscape`).
    """
    _check_model_count(config, len(models))
    live, n = models[0], len(models)
    labels = _marker_labels(config, labels, n)
    prints = [model_fingerprint(live)]
    keep = mask_keep(live, mask_directions, force) if config.plane == "random" and mask_directions is not None else None
    plane, coords, rows = _plane_through(config, models, prints, keep, (train, test))
    xs, ys = resolve_axes(config, coords)
    markers = [{"label": labels[k], "x": coords[k][0], "y": coords[k][1], **rows[k]} for k in range(n)]
    fingerprints = [{"label": labels[k], "fingerprint": prints[k]} for k in range(n)]
    check = _resume_check(config, live, models=fingerprints, mask_directions=mask_directions, data=(train, test))
    info = {
        **(info or {}),
        "plane": {**plane.describe(), "model_coordinates": [list(c) for c in coords]},
        "labels": labels,
        "world_size": world_size,
    }
    return compute_landscape(
        live,
        plane,
        train=train,
        test=test,
        xs=xs,
        ys=ys,
        markers=markers,
        out_dir=out_dir,
        check=check,
        info=info,
        resume=resume,
        rank=rank,
        world_size=world_size,
        barrier=barrier,
        progress=progress,
    )


def explicit_landscape(
    model: torch.nn.Module, u: dict, v: dict | None, *, train: EvalData, test: EvalData, xs, ys, out_dir, **kwargs
) -> LandscapeResult | None:
    """Landscape along caller-given directions (name -> tensor), e.g. to test orientation."""
    plane = ExplicitPlane(model, u, v)
    ys = ys if v is not None else (0.0,)
    return compute_landscape(model, plane, train=train, test=test, xs=xs, ys=ys, out_dir=out_dir, **kwargs)
