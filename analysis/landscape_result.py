"""The result of a landscape run: the grid's arrays assembled from the stored points, and its files.

`assemble_result` turns the per-point records of a finished run (see `landscape_store`) into the
loss grids and writes `landscape.json` + `landscape.npz` through the results contract; layout as in
`analysis.landscape` (losses[j, i] at (xs[i], ys[j])).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from mftlab.errors import ConfigError
from mftlab.files.results import header, read_arrays, read_result, result_files, result_path, write_result

LAYOUT = "losses[j, i] is the loss at (xs[i], ys[j]); shape (len(ys), len(xs)); point k = j * len(xs) + i"


@dataclass
class LandscapeResult:
    xs: np.ndarray  # (nx,)
    ys: np.ndarray  # (ny,)
    train_loss: np.ndarray  # (ny, nx), nats per label token
    test_loss: np.ndarray  # (ny, nx)
    markers: list[dict]
    out_dir: str
    seconds_per_point: float | None
    computed: int  # points computed by this process in this call

    def loss(self, split: str = "train") -> np.ndarray:
        return self.train_loss if split == "train" else self.test_loss

    def save(self, folder: str | os.PathLike) -> list[str]:
        """Write landscape.json and landscape.npz (the ones in `out_dir`, read back kind-checked) into `folder`."""
        if os.path.abspath(folder) == os.path.abspath(self.out_dir):
            return [result_path(folder, "landscape"), result_path(folder, "landscape", "arrays")]
        return write_result(
            folder, "landscape", read_result(self.out_dir, "landscape"), arrays=read_arrays(self.out_dir, "landscape")
        )


def finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def assemble_result(
    records: dict[int, dict], *, xs, ys, markers: list[dict], out_dir: str, run: dict
) -> LandscapeResult:
    nx, ny = len(xs), len(ys)
    total = nx * ny + len(markers)
    missing = [k for k in range(total) if k not in records]
    if missing:
        raise ConfigError(f"{len(missing)} of {total} landscape points are missing in '{out_dir}'; rerun with --resume")
    arrays = {
        k: np.full((ny, nx), np.nan)
        for k in ("train_loss", "test_loss", "train_token_accuracy", "test_token_accuracy", "perturbation_norm")
    }
    for k in range(nx * ny):
        r = records[k]
        j, i = divmod(k, nx)
        for split in ("train", "test"):
            nll, tokens, correct = r[split]
            arrays[f"{split}_loss"][j, i] = nll / tokens
            arrays[f"{split}_token_accuracy"][j, i] = correct / tokens
        arrays["perturbation_norm"][j, i] = r["norm"]
    for m, marker in enumerate(markers):
        r = records[nx * ny + m]
        marker["train_loss"] = finite_or_none(r["train"][0] / r["train"][1])
        marker["test_loss"] = finite_or_none(r["test"][0] / r["test"][1])
        marker["perturbation_norm"] = r["norm"]
    seconds = [r["seconds"] for r in records.values() if "seconds" in r]
    spp = float(np.median(seconds)) if seconds else None
    result = LandscapeResult(
        np.asarray(xs, dtype=np.float64),
        np.asarray(ys, dtype=np.float64),
        arrays["train_loss"],
        arrays["test_loss"],
        markers,
        out_dir,
        spp,
        0,
    )
    _write_final(result, arrays, run)
    return result


def _write_final(result: LandscapeResult, arrays: dict, run: dict) -> None:
    saved = dict(
        xs=result.xs,
        ys=result.ys,
        layout=np.array(LAYOUT),
        marker_xy=np.array([[m["x"], m["y"]] for m in result.markers], dtype=np.float64).reshape(-1, 2),
        marker_train_loss=np.array(
            [m["train_loss"] if m["train_loss"] is not None else np.nan for m in result.markers]
        ),
        marker_test_loss=np.array([m["test_loss"] if m["test_loss"] is not None else np.nan for m in result.markers]),
        **arrays,
    )
    finite = {s: arrays[f"{s}_loss"][np.isfinite(arrays[f"{s}_loss"])] for s in ("train", "test")}
    doc = {
        **header("landscape"),
        "layout": LAYOUT,
        "files": {"arrays": result_files("landscape").arrays},
        **{k: v for k, v in run.items() if k != "check"},
        **run["check"],
        "markers": result.markers,
        "summary": {
            f"{s}_loss_{what}": finite_or_none(float(fn(finite[s]))) if finite[s].size else None
            for s in ("train", "test")
            for what, fn in (("min", np.min), ("max", np.max))
        },
        "seconds_per_point": result.seconds_per_point,
    }
    write_result(result.out_dir, "landscape", doc, arrays=saved)
