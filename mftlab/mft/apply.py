"""Applying a mask: in memory, or as a merged Hugging Face folder that any tool loads.

The merged folder is an ordinary model folder (safetensors weights, config, tokenizer) whose
masked weights are zero. When the model is a local folder of safetensors shards, the shards
are rewritten one at a time, so peak memory is about one shard; otherwise the model is loaded
once, masked in place and saved (peak about one model copy).
"""

from __future__ import annotations

import json
import os
import shutil

import torch

from mftlab.errors import MftlabError
from mftlab.files.atomic import atomic_dir
from mftlab.mask.maskfile import Mask
from mftlab.models.loading import is_gguf_config, load_model, named_weights

# Files copied verbatim from a model folder next to the rewritten weights.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5")


@torch.no_grad()
def apply_mask_(model: torch.nn.Module, mask: Mask, force: bool = False) -> list[str]:
    """Zero the masked weights of `model` in place. Returns names whose fingerprints differed (with force)."""
    weights = named_weights(model)
    mismatched = mask.check_fits(weights, force=force)
    for name in mask.names:
        weight = weights[name]
        weight.mul_(mask.keep(name, weight.device).to(weight.dtype))
    return mismatched


def load_masked(source: str, mask: Mask | str | None = None, *, force: bool = False, **load):
    """A model (folder, hub id, GGUF or preset; `load` goes to load_model) with `mask` (a Mask or a mask
    file, read and checked before any weights are loaded) applied in memory.

    Returns (LoadedModel, names of the tensors whose fingerprints differed: only with force).
    """
    if isinstance(mask, (str, os.PathLike)):
        from mftlab.mask.maskfile import load_mask

        mask = load_mask(mask)
    loaded = load_model(source, **load)
    mismatched = apply_mask_(loaded.model, mask, force=force) if mask is not None else []
    return loaded, mismatched


def _check_out(out_dir: str) -> None:
    if os.path.exists(out_dir):
        raise MftlabError(f"--out '{out_dir}' already exists; choose a new folder or remove it")


def _shard_files(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))


def _mask_shards_in_place(model_dir: str, mask: Mask, out_tmp: str, force: bool, progress=None) -> list[str] | None:
    """Rewrite each safetensors shard with the mask applied; None when the layout does not fit."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    shards = _shard_files(model_dir)
    if not shards:
        return None
    located = {}
    for shard in shards:
        with safe_open(os.path.join(model_dir, shard), framework="pt") as f:
            located.update({k: shard for k in f.keys()})
    if any(name not in located for name in mask.names):
        return None  # e.g. keys saved under another prefix: take the load-the-model path

    mismatched = []
    for shard in shards:
        path = os.path.join(model_dir, shard)
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # one shard in memory at a time
        here = [n for n in mask.names if located[n] == shard]
        mismatched += mask.check_fits({n: tensors[n] for n in here}, force=force) if here else []
        for name in here:
            tensors[name] = tensors[name] * mask.keep(name).to(tensors[name].dtype)
        save_file(tensors, os.path.join(out_tmp, shard), metadata=metadata)
        del tensors
        if progress is not None:
            progress(shards.index(shard) + 1, len(shards))
    for entry in os.listdir(model_dir):
        src = os.path.join(model_dir, entry)
        if entry == "config.json":
            _copy_config(src, os.path.join(out_tmp, entry))
        elif os.path.isfile(src) and not entry.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(src, os.path.join(out_tmp, entry))
    return mismatched


def _copy_config(src: str, dst: str) -> None:
    """config.json as is, less a GGUF `quantization_config` (the weights are plain tensors already)."""
    with open(src, encoding="utf-8") as f:
        config = json.load(f)
    if is_gguf_config(config.get("quantization_config")):
        del config["quantization_config"]
        with open(dst, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
    else:
        shutil.copy2(src, dst)


def write_merged(
    model_source: str,
    mask: Mask | None,
    out_dir: str,
    *,
    force: bool = False,
    dtype: str = "auto",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    device="cpu",
    progress=None,
) -> list[str]:
    """Write `model_source` with `mask` applied as a Hugging Face folder at `out_dir` (atomically);
    `progress(done, total)` after each shard file written.

    A local safetensors folder is masked shard by shard on the CPU; anything else is loaded onto
    `device`, masked there and saved.

    Returns the names of tensors whose fingerprints differed from the mask's base (only with force).
    With `mask=None` the model is written as it is: e.g. a GGUF file as an ordinary safetensors folder.
    """
    out_dir = os.fspath(out_dir)
    _check_out(out_dir)
    with atomic_dir(out_dir) as tmp:
        mismatched = None
        if os.path.isdir(model_source) and gguf_file is None and dtype == "auto" and mask is not None:
            mismatched = _mask_shards_in_place(model_source, mask, tmp, force, progress)
        if mismatched is None:
            loaded, mismatched = load_masked(
                model_source,
                mask,
                force=force,
                dtype=dtype,
                gguf_file=gguf_file,
                trust_remote_code=trust_remote_code,
                device=device,
            )
            loaded.model.save_pretrained(tmp, safe_serialization=True)
            if loaded.tokenizer is not None:
                loaded.tokenizer.save_pretrained(tmp)
        if mask is None:
            return mismatched
        with open(os.path.join(tmp, "mftlab_mask.json"), "w") as f:
            json.dump(
                {
                    "mask_ratio": mask.mask_ratio,
                    "method": mask.method,
                    "base_model": mask.base_model,
                    "forced_mismatches": mismatched,
                },
                f,
                indent=2,
            )
    return mismatched
