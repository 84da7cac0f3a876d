"""mftlab: Mask Fine-Tuning (MFT) for causal language models.

Learn a binary mask over the weights of an already fine-tuned model, store it as a compact
bit-packed safetensors file, and analyse what it removed.

The public API (everything else is internal):

    load_model(source, dtype=, gguf_file=)      -> LoadedModel(model, tokenizer, source)
    mask_model(model, targets=, layers=, mask_ratio=, granularity=, selection=, score_init=, seed=)
                                                -> MaskedModel: .refresh() .trainable_parameters()
                                                   .export() .save(path) .unload() .merge()
    SelectionConfig(mask_ratio=, selection=, granularity=, ...)  how scores become a mask, as one object
                                                (mask_model(model, selection=...); TrainConfig.selection)
    Mask.load(path) / .save(path) / .apply_to(model) (reversible) / mask[name] (bool keep tensor)
    baseline_mask(model, kind="random"|"magnitude"|"wanda"|"snip", mask_ratio=, data=, tokenizer=) -> Mask
    mask_stats(mask, model=) / compare_masks([masks]) / landscape(model, data, eval_data)
                                                -> results with .save(folder); plot(folder) draws them
    train(TrainConfig(model=, data=, out=, ...)) -> TrainResult (the `mftlab train` loop)
    evaluate(model_or_loaded, tasks=[...], mask=, **lm_eval_options) -> lm-eval's results (mftlab[eval])
    compare_evals(a, b, metric="exact_match"|"loss") -> paired CI and test of B - A; .save(folder)
    mftlab.integrations.MaskCallback            -> MFT inside transformers.Trainer / TRL's SFTTrainer

Example:
    >>> import mftlab
    >>> model = mftlab.load_model("micro-llama").model
    >>> handle = mftlab.mask_model(model, mask_ratio=0.1)
    >>> round(handle.export().mask_ratio, 2)
    0.1
    >>> _ = handle.unload()

Errors a user can fix are `MftlabError`s with one-line messages naming the argument
(`mask_ratio=1.5 is outside (0, 1); ...`).
"""

__version__ = "0.1.0"

from mftlab.errors import ConfigError, MftlabError  # noqa: E402  (light: no torch)

# name -> module that defines it. Imported on first use (PEP 562), so `import mftlab` stays light
# and mftlab never imports its analysis / figures sub-packages at import time (no import cycle).
_LAZY = {
    "load_model": "mftlab.models.loading",
    "LoadedModel": "mftlab.models.loading",
    "mask_model": "mftlab.api.handle",
    "MaskedModel": "mftlab.api.handle",
    "SelectionConfig": "mftlab.mft.masking",
    "Mask": "mftlab.mask.maskfile",
    "baseline_mask": "mftlab.api.baseline",
    "train": "mftlab.training.loop",
    "TrainConfig": "mftlab.training.config",
    "TrainResult": "mftlab.training.loop",
    "mask_stats": "mftlab.analysis.api",
    "compare_masks": "mftlab.analysis.api",
    "landscape": "mftlab.analysis.api",
    "plot": "mftlab.figures.render",
    "evaluate": "mftlab.api.benchmarks",
    "compare_evals": "mftlab.significance.api",
}

__all__ = ["__version__", "MftlabError", "ConfigError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'mftlab' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(__all__))
