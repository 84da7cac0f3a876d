"""Loading causal language models: local folders, hub ids, GGUF files and built-in presets."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mftlab.errors import ModelLoadError
from mftlab.models.presets import PRESETS, build_preset, is_preset

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object | None
    source: str  # what the user passed: preset name, folder, hub id or GGUF path


def resolve_dtype(dtype: str):
    if dtype not in DTYPES:
        raise ModelLoadError.for_option(
            "dtype", dtype, f"is not supported; choose one of {', '.join(DTYPES)}", quote=True
        )
    return DTYPES[dtype]


def is_gguf_config(quantization_config) -> bool:
    """True for the `quantization_config` transformers records for a model read from a GGUF file."""
    method = (
        quantization_config.get("quant_method")
        if isinstance(quantization_config, dict)
        else getattr(quantization_config, "quant_method", None)
    )
    return method is not None and str(getattr(method, "value", method)) == "gguf"


def drop_gguf_marker(model: torch.nn.Module) -> torch.nn.Module:
    """Make a model read from GGUF an ordinary one.

    transformers de-quantises GGUF weights into plain tensors on load but keeps a quantizer
    marker (and `config.quantization_config`), so `save_pretrained` refuses the model and a
    saved folder would carry the marker on. The weights need nothing of it; the marker goes.
    """
    if not is_gguf_config(getattr(model.config, "quantization_config", None)):
        return model
    model.hf_quantizer, model.is_quantized, model.quantization_method = None, False, None
    del model.config.quantization_config
    return model


def _looks_local(source: str) -> bool:
    return os.path.sep in source or source.startswith(".") or os.path.exists(source)


def load_model(
    source: str,
    dtype: str = "auto",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load an AutoModelForCausalLM (and its tokenizer when present) in eval mode.

    `source` is a preset name (see mftlab.models.presets), a local folder, or a hub id. With
    `gguf_file`, transformers de-quantises that GGUF file found in `source` (or `source` is the
    file itself). `trust_remote_code` stays off unless asked.

    Example:
        >>> import mftlab
        >>> loaded = mftlab.load_model("micro-llama")  # or a folder, a hub id, "model.gguf"
        >>> type(loaded.model).__name__, loaded.tokenizer is not None
        ('LlamaForCausalLM', True)
    """
    torch_dtype = resolve_dtype(dtype)
    source = str(source)
    if is_preset(source):
        model, tokenizer = build_preset(source)
        if torch_dtype not in ("auto", torch.float32):
            model = model.to(torch_dtype)
        return LoadedModel(model.to(device), tokenizer, source)

    if source.endswith(".gguf") and gguf_file is None:
        source, gguf_file = os.path.dirname(source) or ".", os.path.basename(source)
    if _looks_local(source) and not os.path.isdir(source):
        raise ModelLoadError(
            f"model '{source}' is neither a folder nor a preset ({', '.join(PRESETS)}); check the path"
        )
    if os.path.isdir(source) and gguf_file is None and not os.path.exists(os.path.join(source, "config.json")):
        raise ModelLoadError(f"folder '{source}' has no config.json; pass a Hugging Face model folder")
    if gguf_file is not None and not os.path.exists(os.path.join(source, gguf_file)) and _looks_local(source):
        raise ModelLoadError(f"GGUF file '{os.path.join(source, gguf_file)}' does not exist; check --gguf-file")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"trust_remote_code": trust_remote_code}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except TypeError:  # transformers < 4.56 calls it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(source, torch_dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load model '{source}': {first}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, TypeError):
        tokenizer = None  # a folder of weights alone is still a model
    if tokenizer is None and gguf_file is not None and os.path.isdir(source):
        try:  # a GGUF file without tokenizer metadata, next to an ordinary tokenizer
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, KeyError, TypeError):
            tokenizer = None
    model.eval()
    drop_gguf_marker(model)  # a GGUF file, or a folder saved from one whose config.json kept the marker
    return LoadedModel(model.to(device), tokenizer, source)


def named_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter by state-dict name (tied ones under each of their names)."""
    return dict(model.named_parameters(remove_duplicate=False))


def meta_model(config, dtypes: dict[str, torch.dtype]) -> torch.nn.Module:
    """An AutoModelForCausalLM of `config` on the meta device: shapes and dtypes, no memory.

    What the ranks > 0 of a sharded run build instead of reading the checkpoint (their shards are
    allocated after sharding and filled by broadcast from rank 0). `dtypes` (by parameter and
    buffer name) are the loaded model's own: a bf16 checkpoint keeps fp32 rotary frequencies.
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for kind in (module._parameters, module._buffers):
            for key, t in kind.items():
                want = dtypes.get(prefix + key)
                if t is not None and want is not None and t.dtype != want:
                    if isinstance(t, torch.nn.Parameter):
                        t.data = t.data.to(want)  # free on the meta device
                    else:
                        kind[key] = t.to(want)
    return model.eval()


def tensor_dtypes(model: torch.nn.Module) -> dict[str, torch.dtype]:
    """The dtype of every parameter and buffer by name (tied ones under each name)."""
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return {name: t.dtype for name, t in named}
