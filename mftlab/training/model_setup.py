"""The model a training run trains: loaded, with exactly the right parameters trainable.

MFT attaches masked wrappers (only the scores train), FFT unfreezes every weight, LoRA wraps the
targets with peft; gradient checkpointing is switched on the model itself.
"""

from __future__ import annotations

import torch

from mftlab.errors import ConfigError
from mftlab.mft.masking import attach_masks
from mftlab.mft.targeting import resolve_targets
from mftlab.models.loading import LoadedModel, load_model
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


def prepare_model(config: TrainConfig, loaded: LoadedModel | None):
    """(model, tokenizer, masked layers or None) with exactly the right parameters trainable."""
    loaded = loaded or load_model(config.model, config.dtype, config.gguf_file, config.trust_remote_code)
    model = loaded.model
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    layers = None
    if config.method == "mask":
        targets = resolve_targets(model, config.target_spec())
        layers = attach_masks(model, targets, config.score_init, config.score_std, config.score_dtype, config.seed)
    elif config.method == "lora":
        model = attach_lora(model, resolve_targets(model, config.target_spec()), config)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    return model, loaded.tokenizer, layers


def trainable_parameters(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}
