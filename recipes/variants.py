"""MFT's recipe chosen on validation, and the random-mask baseline over several draws (issue 13).

- every MFT variant of the protocol's grid (score init x score learning rate) trains from the same
  FFT checkpoint on the same data, each in its own cached folder (`mft-<init>-lr<lr>`, named by
  `variant_name`; recipes.protocol_runs); each variant's mask is its best-on-validation
  checkpoint, as for FFT and continued FFT.
- `choose_variant`: the variant with the lowest validation loss is "MFT" in the tables
  (recipes.choose: test numbers are never read).
- `random_draws` / `combine_draws`: the random mask drawn with several seeds, scored one by one
  and summarised as the mean (the tables show mean ± std over the draws).
"""

from __future__ import annotations

import os
import statistics

from mftlab.recipes import steps
from mftlab.recipes.choose import best_on_validation


def variant_name(score_init: str, score_lr: float) -> str:
    return f"{score_init}-lr{score_lr:g}"


def describe(name: str) -> str:
    init, _, lr = name.partition("-lr")
    return f"{init} init, score-lr {lr}"


def choose_variant(scored: dict[str, dict]) -> str:
    """The variant whose (best-checkpoint) mask has the lowest validation loss."""
    names = list(scored)
    return names[best_on_validation([scored[n] for n in names], key="validation_loss")]


def draw_seeds(seed: int, draws: int) -> list[int]:
    """Mask seeds of the random baseline for protocol seed `seed` (disjoint across protocol seeds)."""
    return [seed * draws + k for k in range(draws)]


def random_draws(root: str, best: str, config, seed: int, **place) -> list[tuple[int, str]]:
    """(mask seed, path) of every random-mask draw at the MFT ratio and layers (cached); `place`
    (device, dtype) is where the model is loaded."""
    folder = os.path.join(root, "baselines")
    return [
        (
            s,
            steps.make_baseline_mask(
                folder,
                best,
                "random",
                config.mask_ratio,
                config.layers,
                seed=s,
                name=f"random-seed{s}" if k else "random",
                **place,
            ),
        )
        for k, s in enumerate(draw_seeds(seed, config.random_seeds))
    ]


def combine_draws(results: list[dict], seeds: list[int]) -> dict:
    """One method entry whose numbers are the means over the draws; the draws themselves under `draws`."""
    first = results[0]
    test = {d: {k: statistics.fmean(r["test"][d][k] for r in results) for k in first["test"][d]} for d in first["test"]}
    return {
        "method": "random",
        "test": test,
        "validation_loss": statistics.fmean(r["validation_loss"] for r in results),
        "draws": [dict(r, mask_seed=s) for r, s in zip(results, seeds)],
    }
