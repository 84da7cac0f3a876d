"""The analysis part of the public API (`mftlab.mask_stats`, `mftlab.compare_masks`, `mftlab.landscape`).

Thin facades over `mftlab.analysis.stats`, `.overlap` and `.landscape` that accept what a Python
user holds (a `Mask` or a path, a model or a model name) and return the same result objects the
CLI writes; each result has `.save(folder)`, and `mftlab.plot(folder)` draws it. `mftlab`
reaches this module lazily, so `import mftlab` never imports the analysis code.
"""

from __future__ import annotations

import os
import tempfile

import torch

from mftlab.analysis.landscape_result import LandscapeResult
from mftlab.analysis.overlap import OverlapResult
from mftlab.analysis.stats import StatsResult
from mftlab.mask.maskfile import Mask, load_mask
from mftlab.models.loading import LoadedModel, load_model


def _model(source, **load) -> LoadedModel:
    """A LoadedModel from a name / folder / GGUF path, a LoadedModel, or an nn.Module (no tokenizer)."""
    if isinstance(source, LoadedModel):
        return source
    if isinstance(source, torch.nn.Module):
        return LoadedModel(source, None, str(getattr(getattr(source, "config", None), "_name_or_path", "")))
    return load_model(os.fspath(source), **load)


def mask_stats(mask: Mask | str | os.PathLike, model=None, base=None, *, force: bool = False, **load) -> StatsResult:
    """Masked fraction per tensor, layer, projection and overall, with row / column concentration.

    `model` (the base the mask was learned on: a model or a name) adds |w| of masked versus kept
    weights and the overlap with the magnitude mask; `base` (the model before fine-tuning, needs
    `model`) adds |w_model - w_base|. `load` (dtype, gguf_file, ...) goes to `load_model`.

    Example:
        >>> import mftlab
        >>> model = mftlab.load_model("micro-llama").model
        >>> mask = mftlab.baseline_mask(model, kind="random", mask_ratio=0.1)
        >>> stats = mftlab.mask_stats(mask, model)
        >>> round(stats.mask_ratio, 2)
        0.1
        >>> files = stats.save("results/stats")  # doctest: +SKIP
    """
    from mftlab.analysis.stats import compute_mask_stats

    source = "" if isinstance(mask, Mask) else os.fspath(mask)
    mask = mask if isinstance(mask, Mask) else load_mask(mask)
    weights = _model(model, **load).model if model is not None else None
    before = _model(base, **load).model if base is not None else None
    return compute_mask_stats(mask, weights, before, force=force, source=source)


def compare_masks(masks: list, labels: list[str] | None = None, *, force: bool = False) -> OverlapResult:
    """Overlap between masks (Jaccard, lift, hypergeometric p-values, k-of-N consensus), on packed bits.

    `masks` are `Mask` objects or paths; `labels` name them (default: file names).

    Example:
        >>> import mftlab
        >>> model = mftlab.load_model("micro-llama").model
        >>> a = mftlab.baseline_mask(model, kind="magnitude")
        >>> b = mftlab.baseline_mask(model, kind="random")
        >>> overlap = mftlab.compare_masks([a, b], labels=["l1", "random"])
        >>> 0 < overlap.overall("l1", "random")["jaccard"] < 1
        True
    """
    from mftlab.analysis.overlap import compare_masks as _compare

    return _compare(list(masks), labels, force=force)


def landscape(
    model,
    data: str,
    eval_data: str,
    *,
    others: list = (),
    plane: str = "random",
    grid: str = "21x21",
    range: str | None = None,
    margin: float = 0.2,
    labels: list[str] | None = None,
    normalization: str = "filter",
    include_1d: bool = False,
    orthogonalize: bool = False,
    targets: str | None = None,
    layers: str | None = None,
    exclude: str | None = None,
    mask_directions: Mask | str | None = None,
    max_tokens: int = 4096,
    max_seq_len: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    force: bool = False,
    tokenizer=None,
    **load,
) -> LandscapeResult:
    """Train and test loss on a grid over a plane (or line) in weight space, as `mftlab landscape` computes it.

    `model` is the centre (random plane) or first model: a name / folder / GGUF path, a
    `LoadedModel`, or an nn.Module with `tokenizer=`. `others` are further models (objects or
    names): projected onto a random plane, or spanning the plane (`plane="models"`: two more) or
    line (`plane="line"`: one more). Results go to `out` (a temporary folder when None; keep
    them with `.save(folder)`). The model's weights are restored exactly afterwards.

    Example:
        >>> import mftlab
        >>> result = mftlab.landscape("micro-llama", "train.jsonl", "test.jsonl", grid="5x5")  # doctest: +SKIP
        >>> result.train_loss.shape, result.save("results/landscape")  # doctest: +SKIP
    """
    from mftlab.analysis.landscape import LandscapeConfig, loss_landscape
    from mftlab.analysis.landscape_data import load_eval_data

    first = _model(model, **load)
    tokenizer = tokenizer if tokenizer is not None else first.tokenizer
    config = LandscapeConfig.from_options(
        plane,
        grid,
        range,
        margin,
        seed=seed,
        normalization=normalization,
        include_1d=include_1d,
        orthogonalize=orthogonalize,
        targets=targets,
        layers=layers,
        exclude=exclude,
    )
    device = next(first.model.parameters()).device
    batching = {"max_seq_len": max_seq_len, "batch_size": batch_size, "max_tokens": max_tokens, "device": device}
    train, test = (load_eval_data(source, tokenizer, **batching) for source in (data, eval_data))
    mask = load_mask(mask_directions) if isinstance(mask_directions, (str, os.PathLike)) else mask_directions
    sources = [first.model] + [(lambda o=o: _model(o, **load).model) for o in others]
    out = os.fspath(out) if out is not None else tempfile.mkdtemp(prefix="mftlab-landscape-")
    info = {
        "sources": [first.source] + [str(o) for o in others],
        "data_sources": {"train": data, "test": eval_data},
        "max_tokens": max_tokens,
        "max_seq_len": max_seq_len,
        "batch_size": batch_size,
    }
    return loss_landscape(
        sources, train, test, config, out, labels=labels, mask_directions=mask, force=force, info=info, resume=resume
    )
