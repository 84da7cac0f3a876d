"""The paper's protocol end to end, on any backbone and data (what `mftlab protocol` and `mftlab demo` run).

For each domain and seed: backbone (lower bound) -> full fine-tuning, best validation checkpoint
kept (upper bound) -> continued fine-tuning from that checkpoint, its length chosen on validation
(best checkpoint) -> MFT from it (a local layer group at the configured mask ratio) for every
variant of a small grid (score init x score learning rate); the variant with the best validation
loss is "MFT" (recipes.variants) -> random masks (several draws), the magnitude mask and the
pruning criteria Wanda and SNIP at the same ratio -> LoRA when peft is installed. Then every method
is scored on every domain's test set, and the first seed's masks get stats, dynamics, overlap, a
comparison with the pruning criteria and a loss landscape through FFT / continued FFT / MFT.
Which methods run, the backbone, the data and every length and rate come from a ProtocolConfig
(recipes.protocol_config).

Everything lands in `out/`; `out/demo.json` indexes it for the report (figures.report), with the
methods' labels and roles (recipes.methods). Each step is cached (see recipes.steps), so
re-running reuses finished steps.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from typing import Callable

from mftlab.files.results import header, write_result
from mftlab.recipes import steps
from mftlab.recipes import variants as recipe
from mftlab.recipes.methods import METHODS, NAMES, describe_methods
from mftlab.recipes.protocol_config import ProtocolConfig, config_to_dict
from mftlab.training.config import TrainConfig
from mftlab.training.data import read_rows


@dataclass
class ProtocolProgress:
    step: int
    total: int
    message: str


def lora_available() -> bool:
    return importlib.util.find_spec("peft") is not None


def _runs_lora(config: ProtocolConfig) -> bool:
    return "lora" in config.methods and lora_available()


def _train_config(t, **kw) -> TrainConfig:
    return TrainConfig(
        batch_size=t.batch_size,
        max_seq_len=t.max_seq_len,
        eval_every=t.eval_every,
        log_every=t.eval_every,
        warmup_ratio=t.warmup_ratio,
        **kw,
    )


def _domain_runs(config: ProtocolConfig, out: str, seed: int, domain: str, backbone: str, say) -> dict:
    """Train every method of one domain and seed; returns run summaries and method sources."""
    t, root = config.training, os.path.join(out, f"seed-{seed}", domain)
    files, methods = config.domains[domain], config.methods
    common = dict(data=files.train, eval_data=files.validation, seed=seed)
    say(f"{domain} (seed {seed}): full fine-tuning from the backbone")
    fft = steps.run_training(
        os.path.join(root, "fft"),
        _train_config(
            t, model=backbone, out=os.path.join(root, "fft"), method="fft", lr=t.fft_lr, epochs=t.fft_epochs, **common
        ),
    )
    best = os.path.join(root, "fft", "best")
    mft_steps = max(1, round(t.mft_epochs * len(read_rows(files.train)) / t.batch_size))
    runs = {"fft": fft}
    if "continued_fft" in methods:
        say(f"{domain} (seed {seed}): continued fine-tuning from the best checkpoint (step {fft['best_step']})")
        runs["continued_fft"] = steps.run_training(
            os.path.join(root, "continued"),
            _train_config(
                t,
                model=best,
                out=os.path.join(root, "continued"),
                method="fft",
                lr=t.fft_lr,
                max_steps=mft_steps,
                **common,
            ),
        )

    def mft_config(out: str, score_init: str, score_lr: float) -> TrainConfig:
        return _train_config(
            t,
            model=best,
            out=out,
            method="mask",
            layers=config.layers,
            mask_ratio=config.mask_ratio,
            score_init=score_init,
            score_lr=score_lr,
            max_steps=mft_steps,
            save_every=max(1, mft_steps // 6),
            keep_checkpoints=100,
            **common,
        )

    variants = recipe.train_variants(config, root, best, mft_config, mft_steps, say, f"{domain} (seed {seed})")
    sources = {"backbone": (backbone, None)} if "backbone" in methods else {}
    sources["fft"] = (best, None)
    if "continued_fft" in methods:  # continued FFT's length is chosen on validation too: its best checkpoint
        sources["continued_fft"] = (os.path.join(root, "continued", "best"), None)
    draws = recipe.random_draws(root, best, config, seed) if "random" in methods else []
    if draws:
        sources["random"] = (best, draws[0][1])
    if "magnitude" in methods:
        sources["magnitude"] = (
            best,
            steps.make_baseline_mask(
                os.path.join(root, "baselines"), best, "magnitude", config.mask_ratio, config.layers, seed
            ),
        )
    for kind in [k for k in steps.PRUNING_KINDS if k in methods]:  # calibrated on the domain's training data
        sources[kind] = (
            best,
            steps.make_pruning_mask(
                os.path.join(root, "baselines"),
                best,
                kind,
                config.mask_ratio,
                config.layers,
                files.train,
                t.max_seq_len,
                config.calibration_tokens,
            ),
        )
    if _runs_lora(config):
        say(f"{domain} (seed {seed}): LoRA from the backbone")
        runs["lora"] = steps.run_training(
            os.path.join(root, "lora"),
            _train_config(
                t,
                model=backbone,
                out=os.path.join(root, "lora"),
                method="lora",
                lr=t.lora_lr,
                epochs=t.lora_epochs,
                layers=None,
                lora_r=t.lora_r,
                lora_alpha=t.lora_alpha,
                lora_dropout=t.lora_dropout,
                **common,
            ),
        )
        sources["lora"] = ("lora", runs["lora"]["output"])
    return {
        "runs": runs,
        "sources": sources,
        "root": root,
        "mft_steps": mft_steps,
        "variants": variants,
        "random_draws": draws,
    }


def _loader(method: str, model_dir: str, extra, backbone: str):
    """A function that loads `method`'s model (and tokenizer) when its scores are not cached yet."""
    if method == "lora":
        return lambda: steps.load_lora_model(extra, backbone)
    return lambda: steps.load_method_model(model_dir, extra)


def _evaluate_all(config: ProtocolConfig, domain_runs: dict, backbone: str, say) -> dict:
    """scores[train_domain][method][test_domain] = {exact_match, loss, ...} for one seed."""
    max_seq_len = config.training.max_seq_len
    tests = {d: files.test for d, files in config.domains.items()}
    scores = {}
    for domain, info in domain_runs.items():
        scores[domain] = {}
        folder, val = os.path.join(info["root"], "eval"), config.domains[domain].validation
        for method, (model_dir, extra) in info["sources"].items():
            say(f"{domain}: scoring {NAMES[method]} on every test set")
            load = _loader(method, model_dir, extra, backbone)
            if method == "random" and len(info["random_draws"]) > 1:
                results = [
                    steps.evaluate_method(
                        folder,
                        "random" if k == 0 else f"random-seed{s}",
                        lambda path=path: steps.load_method_model(model_dir, path),
                        tests,
                        val,
                        max_seq_len,
                    )
                    for k, (s, path) in enumerate(info["random_draws"])
                ]
                scores[domain][method] = recipe.combine_draws(results, [s for s, _ in info["random_draws"]])
                continue
            scores[domain][method] = steps.evaluate_method(folder, method, load, tests, val, max_seq_len)
        scores[domain]["mft"] = _choose_mft(info, domain, folder, tests, val, max_seq_len, say)
    return scores


def _choose_mft(info: dict, domain: str, folder: str, tests: dict, val: str, max_seq_len: int, say) -> dict:
    """Score every MFT variant, choose on validation loss, and make the chosen one the method `mft`."""
    best_dir, _ = info["sources"]["fft"]
    scored = {}
    for name, run in info["variants"].items():
        say(f"{domain}: scoring MFT ({recipe.describe(name)}) on every test set")
        scored[name] = steps.evaluate_method(
            folder,
            f"mft-{name}",
            lambda path=run["source"]: steps.load_method_model(best_dir, path),
            tests,
            val,
            max_seq_len,
        )
    chosen = recipe.choose_variant(scored)
    info["selected"] = chosen
    info["runs"]["mft"] = info["variants"][chosen]
    info["sources"]["mft"] = (best_dir, info["variants"][chosen]["source"])
    info["variant_scores"] = scored
    return dict(scored[chosen], method="mft", variant=chosen)


def _backbone(config: ProtocolConfig, out: str, say) -> str:
    """The backbone model: the configured one, or the one pre-trained from it on `pretrain.data`."""
    if config.pretrain is None:
        return config.backbone
    p, folder = config.pretrain, os.path.join(out, "backbone")
    say(f"pre-training the backbone ({config.backbone}) on {os.path.basename(p.data)}")
    run = steps.run_training(
        folder,
        TrainConfig(
            model=config.backbone,
            data=p.data,
            out=folder,
            method="fft",
            lr=p.lr,
            epochs=p.epochs,
            batch_size=p.batch_size,
            max_seq_len=p.max_seq_len,
            warmup_ratio=p.warmup_ratio,
            log_every=p.log_every,
            seed=config.seed,
        ),
    )
    return run["output"]


def planned_steps(config: ProtocolConfig) -> int:
    """How many progress messages `run_protocol` sends (trainings, scorings and analyses)."""
    methods, n_variants, lora = config.methods, len(config.mft_variants), int(_runs_lora(config))
    scored = len([m for m in methods if m not in ("mft", "lora")]) + lora
    trained = 1 + int("continued_fft" in methods) + n_variants + lora
    per_domain = trained + scored + n_variants
    analyses = len(config.domains) * (2 + int("continued_fft" in methods)) + int(len(config.domains) > 1)
    return int(config.pretrain is not None) + config.seeds * len(config.domains) * per_domain + analyses


def _variant_index(per_seed: dict) -> dict:
    return {
        str(s): {
            d: {
                "selected": info["selected"],
                "variants": {
                    name: {
                        "score_init": run["score_init"],
                        "score_lr": run["score_lr"],
                        "best_step": run["best_step"],
                        "step0_loss": next((p["eval_loss"] for p in run["curve"] if p["step"] == 0), None),
                        **info["variant_scores"][name],
                    }
                    for name, run in info["variants"].items()
                },
            }
            for d, info in v["runs"].items()
        }
        for s, v in per_seed.items()
    }


def run_protocol(
    config: ProtocolConfig,
    out: str,
    progress: Callable[[ProtocolProgress], None] | None = None,
    done_before: int = 0,
    command: str = "protocol",
) -> dict:
    """Run (or resume) the whole protocol into `out`; returns the index written to `out/demo.json`.

    `done_before` progress steps were already reported by the caller (the demo's data step);
    `command` names the command in the index (the report's title).
    """
    from mftlab.recipes import protocol_analysis

    os.makedirs(out, exist_ok=True)
    started = time.perf_counter()
    seeds = list(range(config.seed, config.seed + config.seeds))
    domains = list(config.domains)
    total = done_before + planned_steps(config)
    counter = {"n": done_before}

    def say(message: str) -> None:
        counter["n"] += 1
        if progress:
            progress(ProtocolProgress(min(counter["n"], total), total, message))

    backbone = _backbone(config, out, say)
    per_seed = {}
    for seed in seeds:
        runs = {d: _domain_runs(config, out, seed, d, backbone, say) for d in domains}
        per_seed[seed] = {"runs": runs, "scores": _evaluate_all(config, runs, backbone, say)}
    analysis = protocol_analysis.analyse(config, out, per_seed[seeds[0]]["runs"], backbone, say)
    methods = [m for m in METHODS if all(m in s["scores"][d] for s in per_seed.values() for d in domains)]
    index = {
        **header("demo"),
        "command": command,
        "config": config_to_dict(config),
        "domains": domains,
        "train_records": {d: len(read_rows(files.train)) for d, files in config.domains.items()},
        "methods": methods,
        **describe_methods(methods),
        "seeds": seeds,
        "scores": {str(s): v["scores"] for s, v in per_seed.items()},
        "curves": {d: {m: r for m, r in per_seed[seeds[0]]["runs"][d]["runs"].items()} for d in domains},
        "analysis": analysis,
        "mft_variants": _variant_index(per_seed),
        "selected_on": "validation loss (test numbers are not used to choose)",
        "lora": _runs_lora(config),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_result(out, "demo", index)
    return index
