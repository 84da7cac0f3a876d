"""`evaluate`: lm-evaluation-harness tasks on a model in memory, optionally with a mask applied, from Python.

The mask is applied reversibly (`Mask.apply_to`), so the model is unchanged afterwards; the results are
lm-eval's dict with mftlab's header under "mftlab" (what `mftlab eval --tasks --json` prints).
"""

from __future__ import annotations

from mftlab.errors import ConfigError
from mftlab.harness.config import HarnessConfig
from mftlab.harness.run import header, run_tasks


def evaluate(model_or_loaded, tasks, *, mask=None, tokenizer=None, force: bool = False, **lm_eval_options) -> dict:
    """lm-eval's results for `tasks` on `model_or_loaded` (a model, or what `load_model` returns).

    `mask` is a Mask or a mask file path, applied in memory for the evaluation only; `tokenizer` is
    needed with a bare model; `lm_eval_options` are HarnessConfig's (num_fewshot, limit, batch_size,
    apply_chat_template, fewshot_as_multiturn, gen_kwargs, include_path, log_samples,
    confirm_run_unsafe_code), lm-eval's own names.

    Example (offline, a task YAML of your own in ./tasks):
        >>> import mftlab
        >>> loaded = mftlab.load_model("micro-llama")
        >>> results = mftlab.evaluate(loaded, ["my_task"], include_path="tasks", limit=8)  # doctest: +SKIP
        >>> results["results"]["my_task"]["exact_match,none"]  # doctest: +SKIP
    """
    from mftlab.mask.maskfile import Mask

    model = getattr(model_or_loaded, "model", model_or_loaded)
    tokenizer = tokenizer if tokenizer is not None else getattr(model_or_loaded, "tokenizer", None)
    names = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    try:
        config = HarnessConfig(tasks=names, **lm_eval_options)
    except TypeError as exc:
        raise ConfigError(f"evaluate(): {exc}; the options are HarnessConfig's (lm-eval's names)") from None
    path = None
    if mask is not None and not isinstance(mask, Mask):
        path, mask = str(mask), Mask.load(mask)
    if mask is None:
        results = run_tasks(model, tokenizer, config)
        return {"mftlab": header(getattr(model_or_loaded, "source", None), None, None, [], config), **results}
    with mask.apply_to(model, force=force) as applied:
        results = run_tasks(model, tokenizer, config)
        mismatched = applied.mismatched
    return {"mftlab": header(getattr(model_or_loaded, "source", None), path, mask, mismatched, config), **results}
