"""A model's shape from its config alone (no weights): what `mftlab plan` computes with.

`load_config(source)` accepts a preset name (`tiny-llama`, ...), a built-in shape of a
well-known model (`llama2-7b`, `llama3.1-8b`, written out below so the paper's runs can be
planned without any file), a local folder with config.json, a config.json path, or a hub id
(fetched only when the hub is reachable). `model_shape(config, spec)` builds the model on the
meta device (no memory, no weights) and counts its parameters and the weights `spec` targets
with the same `resolve_targets` that training uses, so the counts are exact, not estimated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mftlab.errors import ModelLoadError
from mftlab.mft.targeting import Target, TargetSpec, layer_index, maskable_modules, resolve_targets
from mftlab.models.presets import PRESETS

# Fields of the public Hugging Face configs (meta-llama/Llama-2-7b-hf, meta-llama/Llama-3.1-8B).
BUILTIN_SHAPES: dict[str, dict] = {
    "llama2-7b": dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        dtype="float16",
    ),
    "llama3.1-8b": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        dtype="bfloat16",
    ),
}


@dataclass(frozen=True)
class ModelShape:
    """Sizes of one causal LM, counted on its meta-device twin. Counts are elements, not bytes."""

    name: str
    model_type: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    max_positions: int | None
    params: int  # unique parameters (tied embeddings counted once)
    matmul_params: int  # weights of every Linear / Conv1D, output head included (one FLOP pair each per token)
    layer_matmul_params: tuple[int, ...]  # matmul weights per numbered layer
    layer_params: tuple[int, ...]  # all parameters per numbered layer (a sharded unit under zero3 / fsdp)
    matrix_params: int  # every 2-D parameter (what a loss landscape perturbs by default)
    dtype: str  # the config's weight dtype (what --dtype auto loads), float32 when it names none


def _config_dtype(config) -> str:
    dtype = getattr(config, "dtype", None)  # transformers >= 4.56; older ones call it torch_dtype
    if dtype is None and "torch_dtype" in getattr(config, "__dict__", {}):
        dtype = config.__dict__["torch_dtype"]
    name = str(dtype).replace("torch.", "") if dtype is not None else "float32"
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def _looks_local(source: str) -> bool:
    return os.path.sep in source or source.startswith(".") or source.endswith(".json") or os.path.exists(source)


def known_names() -> str:
    return ", ".join(list(PRESETS) + list(BUILTIN_SHAPES))


# Hub ids whose config.json is the built-in shape above (plans of a protocol that names them read no hub).
HUB_SHAPES = {"meta-llama/Llama-2-7b-hf": "llama2-7b", "meta-llama/Llama-3.1-8B": "llama3.1-8b"}


def load_config(source: str):
    """A transformers config for a preset, built-in shape, folder, config.json or hub id."""
    from transformers import AutoConfig, LlamaConfig

    source = str(source)
    if source in PRESETS:
        return PRESETS[source]()
    if source in BUILTIN_SHAPES:
        return LlamaConfig(**BUILTIN_SHAPES[source])
    if source in HUB_SHAPES:  # the public config, written out: planning needs no network
        return LlamaConfig(**BUILTIN_SHAPES[HUB_SHAPES[source]])
    if _looks_local(source):
        if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "config.json")):
            raise ModelLoadError(f"folder '{source}' has no config.json; pass a Hugging Face model folder")
        if not os.path.exists(source):
            raise ModelLoadError(
                f"model '{source}' does not exist; pass a folder, a config.json, or one of {known_names()}"
            )
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot read a config for model '{source}' ({first}); pass a folder with "
            f"config.json, a config.json file, a reachable hub id, or one of {known_names()}"
        ) from None


def meta_model(config) -> torch.nn.Module:
    """The model on the meta device: real module tree and shapes, no storage."""
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except (ValueError, KeyError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"config of type '{getattr(config, 'model_type', '?')}' is not a causal LM "
            f"transformers can build ({first}); pass a causal language model"
        ) from None


def count_shape(model: torch.nn.Module, name: str) -> ModelShape:
    """Count a (meta or real) model's parameters; the same numbers for both."""
    config = model.config
    layers = int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 0))
    layer_mm, layer_all = [0] * layers, [0] * layers
    matmul = 0
    for module_name, module in maskable_modules(model):
        n = module.weight.numel()
        matmul += n
        i = layer_index(module_name)
        if i is not None and i < layers:
            layer_mm[i] += n
    for param_name, p in model.named_parameters():
        i = layer_index(param_name)
        if i is not None and i < layers:
            layer_all[i] += p.numel()
    return ModelShape(
        name=name,
        model_type=str(getattr(config, "model_type", "?")),
        vocab=int(config.vocab_size),
        hidden=int(getattr(config, "hidden_size", None) or config.n_embd),
        layers=layers,
        heads=int(getattr(config, "num_attention_heads", None) or config.n_head),
        max_positions=getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None),
        params=sum(p.numel() for p in model.parameters()),
        matmul_params=matmul,
        layer_matmul_params=tuple(layer_mm),
        layer_params=tuple(layer_all),
        matrix_params=sum(p.numel() for p in model.parameters() if p.dim() == 2),
        dtype=_config_dtype(config),
    )


def model_shape(source: str, spec: TargetSpec | None) -> tuple[ModelShape, list[Target]]:
    """(shape, targeted weights) of the model named by `source`; no targets when `spec` is None."""
    config = load_config(source)
    model = meta_model(config)
    targets = resolve_targets(model, spec) if spec is not None else []
    return count_shape(model, str(source)), targets
