"""`--sharding fsdp`: PyTorch FSDP2 (`fully_shard`) for the trainer, on CPU (gloo) and GPU (nccl).

- `shard_model`: one FSDP unit per decoder layer (found generically: the largest ModuleList of
  identical blocks), then the root (embeddings, final norm, head). Trainable parameters loaded
  in 16 bits become fp32 sharded master parameters, unless `pure_bf16`; the compute dtype
  comes from `--precision` (`fsdp_param_dtype`), gradients are reduced in fp32. Gradient
  accumulation reduce-scatters every micro-batch into the sharded gradient (never an unsharded
  full-size gradient held across micro-batches).
- `full_state`, `broadcast_weights`: rank 0 loads the checkpoint, the other ranks build the model
  on the meta device; after sharding the weights arrive by broadcast, one tensor at a time.
- `ShardedMasks`: MFT's keep-masks chosen from the row shards of the scores with the exact
  distributed selection of `mftlab.mft.sharded_selection`; the masks stay replicated (bool per weight).
- `export_sharded_mask`, `save_gathered_hf`: the run's outputs, the same files as without
  sharding. The HF folder is written one tensor at a time (gathered, cast to the load dtype, on
  the main process), in safetensors shards of at most `max_shard_bytes`.
- `refuse_accelerate_sharding`: an accelerate FSDP / DeepSpeed config is refused with one line.
"""

from __future__ import annotations

import json
import os

import torch
import torch.distributed as dist
from torch import nn

from mftlab.errors import ConfigError
from mftlab.mask.fingerprint import tensor_fingerprint
from mftlab.mask.maskfile import Mask
from mftlab.mft.masking import SelectionConfig
from mftlab.mft.selection_rules import SHARDED_SELECTION_RULES
from mftlab.mft.sharded_selection import ShardedValues, gather_keep, row_counts

_TRUE = ("1", "true", "yes")


def refuse_accelerate_sharding() -> None:
    """ConfigError when `accelerate launch` runs with an FSDP or DeepSpeed config (read from its env)."""
    for var, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(var, "").lower() in _TRUE:
            raise ConfigError(
                f"accelerate's {what} config is not supported ({var} is set); launch with a plain "
                "multi-GPU accelerate config (or torchrun) and pass --sharding fsdp"
            )


def ensure_process_group(device: torch.device) -> bool:
    """Start a one-process group when no launcher started one; True when this call started it."""
    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return True


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a transformer: the ModuleList of one block type holding most parameters."""
    best, best_size = [], 0
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(m) for m in module}) == 1:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = list(module), size
    if not best:
        raise ConfigError(
            f"--sharding fsdp found no decoder layers in {type(model).__name__}; use --sharding none for this model"
        )
    return best


def _sixteen_bit(p) -> bool:
    return p.dtype in (torch.bfloat16, torch.float16)


def needs_master(params, pure_bf16: bool) -> bool:
    """True when some trainable parameter is 16-bit and fp32 master weights are wanted."""
    return not pure_bf16 and any(_sixteen_bit(p) for p in params)


def fsdp_param_dtype(precision: str, resolved: str, model: nn.Module) -> torch.dtype | None:
    """The dtype FSDP computes in (`MixedPrecisionPolicy.param_dtype`), from `--precision`.

    `precision` is the option (auto / bf16 / fp32), `resolved` what the loop resolved it to
    ("bf16" where the GPU supports bf16 autocast, else "no"). fp32 computes in fp32 whatever the
    weights are stored in; bf16 in bf16; auto without bf16 autocast in the trainable weights' own
    16-bit dtype, as DDP does (None: every parameter in its stored dtype). fp16 compute has no loss
    scaler here, so a model that would compute in fp16 is refused.
    """
    if precision == "fp32":
        return torch.float32
    if resolved == "bf16":
        return torch.bfloat16
    if any(p.dtype == torch.float16 for p in model.parameters()):
        raise ConfigError(
            "--sharding fsdp would compute in float16, which needs loss scaling that FSDP training here does "
            "not do; load the model with --dtype bfloat16 (or use --precision fp32)"
        )
    return next((p.dtype for p in model.parameters() if p.requires_grad and _sixteen_bit(p)), None)


def shard_model(
    model: nn.Module, device: torch.device, pure_bf16: bool, param_dtype: torch.dtype | None = None
) -> nn.Module:
    """Apply FSDP2 in place (see the module docstring); returns the same module.

    Unit by unit, so only one decoder layer at a time is cast to fp32 and moved to `device`
    unsharded (fully_shard moves its unit's parameters to the mesh's device, then shards them).
    Trainable 16-bit weights become fp32 sharded masters unless `pure_bf16`; `param_dtype` (see
    `fsdp_param_dtype`) is what the gathered weights compute in, with gradients reduced in fp32 (in
    the weights' own dtype with `pure_bf16`, which keeps no fp32 copy of anything).
    A model on the meta device is sharded the same way (see `broadcast_weights`).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy()
    if param_dtype is not None:  # gradients reduced in fp32 into fp32 masters; --pure-bf16 reduces in bf16
        policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=None if pure_bf16 else torch.float32)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))

    def shard(unit: nn.Module) -> None:
        if not pure_bf16:
            for p in unit.parameters():
                if p.requires_grad and _sixteen_bit(p):
                    p.data = p.data.float()  # the fp32 master, sharded below
        fully_shard(unit, mesh=mesh, mp_policy=policy, reshard_after_forward=True)

    for layer in decoder_layers(model):
        shard(layer)
    shard(model)
    return model


# -- load once, shard, broadcast ---------------------------------------------------------------------
def shard_loaded(
    model: nn.Module, device: torch.device, pure_bf16: bool, param_dtype: torch.dtype | None, rank0_loads: bool
) -> nn.Module:
    """`shard_model`, then, when rank 0 alone loaded (`rank0_loads`), its weights broadcast to every shard.

    Rank 0 keeps references to its full tensors only until the broadcast is done.
    """
    state = full_state(model) if rank0_loads and dist.get_rank() == 0 else None
    model = shard_model(model, device, pure_bf16, param_dtype)
    if rank0_loads:
        broadcast_weights(model, state, device)
    return model


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """References to the loaded model's tensors, taken before sharding (rank 0 broadcasts them)."""
    return dict(model.state_dict())


def broadcast_weights(model: nn.Module, state: dict[str, torch.Tensor] | None, device: torch.device) -> None:
    """Fill a sharded model from rank 0's full `state`; the other ranks pass None.

    Ranks > 0 built their model on the meta device (never the full weights in host memory): their
    shards are allocated here, then every tensor of rank 0's state dict is broadcast one at a time
    and each rank keeps its own shard (torch's `set_model_state_dict(broadcast_from_rank0=True)`).
    Buffers that are not in the state dict (rotary frequencies) are broadcast too; the keep-masks
    of MFT wrappers are skipped, the trainer recomputes them from the scores.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if any(t.is_meta for t in model.parameters()) or any(t.is_meta for t in model.buffers()):
        model.to_empty(device=device)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, state if dist.get_rank() == 0 else {}, options=options)
    listed = [set(state) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(listed, src=0)
    for name, buf in model.named_buffers():
        if name in listed[0] or name.endswith(".keep"):
            continue
        carrier = buf.to(torch.uint8) if buf.dtype == torch.bool else buf  # gloo broadcasts no bool
        dist.broadcast(carrier, src=0)
        if carrier is not buf:
            buf.copy_(carrier.bool())


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


# -- MFT: masks from sharded scores ---------------------------------------------------------------
class ShardedMasks:
    """Exact keep-masks of MaskedLinear layers whose scores are row-sharded (see the module doc)."""

    def __init__(self, layers: dict):
        self.layers = layers
        self.rows = row_counts(self._values(SelectionConfig()))

    def _values(self, selection: SelectionConfig) -> dict[str, ShardedValues]:
        out = {}
        for name, layer in self.layers.items():
            local = _local(layer.mask_scores.detach())
            out[name] = ShardedValues(
                local.abs() if selection.rank_by == "abs" else local, tuple(layer.mask_scores.shape)
            )
        return out

    def refresh(self, selection: SelectionConfig) -> dict[str, torch.Tensor]:
        """Recompute every keep-mask (replicated on all processes) and store it in its wrapper."""
        with torch.no_grad():
            values = self._values(selection)
            rule = SHARDED_SELECTION_RULES.get(selection.selection)
            if rule is None:
                raise ConfigError(
                    f"--selection {selection.selection} is not available with --sharding fsdp; "
                    f"choose one of {', '.join(SHARDED_SELECTION_RULES)} or --sharding none"
                )
            local = rule(self.layers, values, selection)
            keep = gather_keep(local, values, self.rows)
        for name, layer in self.layers.items():
            layer.set_keep(keep[name])
        return keep


def base_fingerprints(layers: dict) -> dict[str, str]:
    """Fingerprints of the frozen base weights, taken once before sharding (they never change)."""
    return {n: tensor_fingerprint(m.base.weight) for n, m in layers.items()}


def export_sharded_mask(layers: dict, fingerprints: dict[str, str], base_name: str, method: dict) -> Mask:
    """The v1 mask of the replicated keep-masks, with the fingerprints taken before sharding."""
    from mftlab.mask.fingerprint import combined_fingerprint

    mask = Mask.from_keep({n: m.keep.cpu() for n, m in layers.items()}, None, base_name, method)
    mask.fingerprints = dict(fingerprints)
    mask.base_model["fingerprint"] = combined_fingerprint(fingerprints)
    return mask


# -- FFT: gathered Hugging Face folder ----------------------------------------------------------
def _plan_files(sizes: list[tuple[str, int]], max_bytes: int) -> list[list[str]]:
    files, current, used = [], [], 0
    for name, size in sizes:
        if current and used + size > max_bytes:
            files.append(current)
            current, used = [], 0
        current.append(name)
        used += size
    return files + [current] if current else files


def save_gathered_hf(
    model: nn.Module, tokenizer, folder: str | None, dtype: torch.dtype, max_shard_bytes: int = 5 * 2**30
) -> None:
    """Write `model` as an HF safetensors folder; every process calls it, `folder` is given on the main one.

    Tensors are gathered one at a time and cast to `dtype`; the main process holds at most one
    file's tensors. Tied parameters are written once (under their first name).
    """
    from safetensors.torch import save_file

    state, seen = {}, set()
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            state[name] = t
    size = {n: t.numel() * (dtype.itemsize if t.is_floating_point() else t.element_size()) for n, t in state.items()}
    files = _plan_files([(n, size[n]) for n in state], max_shard_bytes)
    names = (
        ["model.safetensors"]
        if len(files) == 1
        else [f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" for i in range(len(files))]
    )
    weight_map = {}
    for file_name, members in zip(names, files):
        tensors = {}
        for n in members:
            t = state[n].detach()
            full = t.full_tensor() if hasattr(t, "full_tensor") else t
            if folder is not None:
                tensors[n] = (full.to(dtype) if full.is_floating_point() else full).cpu().contiguous()
            del full
            weight_map[n] = file_name
        if folder is not None:
            save_file(tensors, os.path.join(folder, file_name), metadata={"format": "pt"})
        del tensors
    if folder is None:
        return
    if len(files) > 1:
        index = {"metadata": {"total_size": sum(size.values())}, "weight_map": weight_map}
        with open(os.path.join(folder, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
    model.config.dtype = dtype
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
