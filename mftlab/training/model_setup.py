"""The model a training run trains: loaded, with exactly the right parameters trainable.

MFT attaches masked wrappers (only the scores train), FFT unfreezes every weight, LoRA wraps the
targets with peft; gradient checkpointing is switched on the model itself.
"""

from __future__ import annotations

import torch

from mftlab.errors import ConfigError, MftlabError, ModelLoadError
from mftlab.mft.masking import attach_masks
from mftlab.mft.targeting import resolve_targets
from mftlab.models.loading import LoadedModel, load_model, meta_model, tensor_dtypes
from mftlab.training.config import TrainConfig


def attach_lora(model, targets, config: TrainConfig):
    try:
        import peft
    except ImportError:
        raise ConfigError(
            "--method lora needs the peft library; install it with `pip install 'mftlab[lora]'`"
        ) from None
    lora = peft.LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=[t.module_name for t in targets],
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, lora)


def enable_gradient_checkpointing(model) -> None:
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"--gradient-checkpointing: {type(model).__name__} does not support gradient "
            "checkpointing; drop the flag for this model"
        )
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def disable_gradient_checkpointing(model) -> None:
    off = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    off()


def load_on_rank0(config: TrainConfig) -> LoadedModel:
    """Rank 0 reads the checkpoint; every other rank builds the same model on the meta device.

    For `--sharding fsdp` with several processes: the full weights are in host memory once, on
    rank 0, not once per process (8 x 13.5 GB for a 7B model in bf16). Rank 0 sends the model's
    config, every parameter's and buffer's dtype and the tokenizer (pickled, a few MB); after sharding the
    weights follow by broadcast (`sharding.broadcast_weights`). A load error on rank 0 is raised
    on every rank, so none waits for weights that never come.
    """
    import torch.distributed as dist

    payload = [None]
    if dist.get_rank() == 0:
        try:
            loaded = load_model(config.model, config.dtype, config.gguf_file, config.trust_remote_code)
        except Exception as exc:
            sent = exc if isinstance(exc, MftlabError) else ModelLoadError(f"rank 0 could not load the model: {exc}")
            dist.broadcast_object_list([sent], src=0)
            raise
        dist.broadcast_object_list([(loaded.model.config, tensor_dtypes(loaded.model), loaded.tokenizer)], src=0)
        return loaded
    dist.broadcast_object_list(payload, src=0)
    if isinstance(payload[0], Exception):
        raise payload[0]
    model_config, dtypes, tokenizer = payload[0]
    return LoadedModel(meta_model(model_config, dtypes), tokenizer, config.model)


def prepare_model(config: TrainConfig, loaded: LoadedModel | None, rank0_loads: bool = False):
    """(model, tokenizer, masked layers or None) with exactly the right parameters trainable.

    `rank0_loads`: see `load_on_rank0` (ranks > 0 get a model on the meta device).
    """
    if loaded is None and rank0_loads:
        loaded = load_on_rank0(config)
    loaded = loaded or load_model(config.model, config.dtype, config.gguf_file, config.trust_remote_code)
    model = loaded.model
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    layers = None
    if config.method == "mask":
        targets = resolve_targets(model, config.target_spec())
        layers = attach_masks(
            model,
            targets,
            score_init=config.score_init,
            score_std=config.score_std,
            score_dtype=config.score_dtype,
            seed=config.seed,
        )
    elif config.method == "lora":
        model = attach_lora(model, resolve_targets(model, config.target_spec()), config)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    return model, loaded.tokenizer, layers


def trainable_parameters(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}
