"""The paper's protocol end to end on the built-in tiny benchmark (what `mftlab demo` runs).

For each domain and seed: backbone (lower bound) -> full fine-tuning, best validation checkpoint
kept (upper bound) -> continued fine-tuning from that checkpoint, its length chosen on validation
(best checkpoint) -> MFT from it (a local layer group, mask ratio 0.1) for every variant of a
small grid (score init x score learning rate); the variant with the best validation loss is "MFT"
(recipes.variants) -> random masks (several draws), the magnitude mask and the pruning
criteria Wanda and SNIP at the same ratio -> LoRA when peft is installed. Then every method is
scored on every domain's test set, and the first seed's masks get stats, dynamics, overlap, a
comparison with the pruning criteria and a loss landscape through FFT / continued FFT / MFT.

Everything lands in `out/`; `out/demo.json` indexes it for the report (figures.report). Each
step is cached (see recipes.steps), so re-running reuses finished steps.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

from mftlab import __version__
from mftlab.recipes import variants as recipe
from mftlab.recipes import steps
from mftlab.analysis.results import write_json
from mftlab.errors import ConfigError
from mftlab.mft.masking import SCORE_INITS
from mftlab.mft.selection import check_ratio
from mftlab.mft.targeting import parse_layers
from mftlab.recipes.tinybench import DOMAINS, SplitSizes, pretraining_records, write_benchmark, write_jsonl
from mftlab.training.config import TrainConfig

METHODS = ("backbone", "fft", "continued_fft", "mft", "random", "magnitude", "wanda", "snip", "lora")
METHOD_NAMES = {"backbone": "Backbone (lower bound)", "fft": "FFT best (upper bound)", "continued_fft": "Continued FFT",
                "mft": "MFT", "random": "Random mask", "magnitude": "Magnitude (L1) mask", "lora": "LoRA",
                "wanda": "Wanda mask", "snip": "SNIP mask"}


@dataclass(frozen=True)
class DemoConfig:
    out: str
    seed: int = 0
    seeds: int = 1
    quick: bool = False
    layers: str = "2-3"  # the local layer group MFT trains (the backbone has 4 layers)
    mask_ratio: float = 0.1
    domains: tuple[str, ...] = DOMAINS
    mft_inits: tuple[str, ...] = ("random", "magnitude")  # MFT's grid, chosen on validation
    mft_score_lrs: tuple[float, ...] = (1e-3, 1e-2)
    random_seeds: int = 3  # draws of the random-mask baseline per domain and seed
    mftlab_version: str = __version__

    def __post_init__(self):
        if not (isinstance(self.seeds, int) and 1 <= self.seeds <= 20):
            raise ConfigError(f"--seeds {self.seeds} is outside 1..20; use e.g. 3 for mean and spread")
        check_ratio(self.mask_ratio)
        parse_layers(self.layers)
        unknown = [d for d in self.domains if d not in DOMAINS]
        if unknown:
            raise ConfigError(f"domain '{unknown[0]}' is unknown; choose from {', '.join(DOMAINS)}")
        if not self.mft_inits or any(i not in SCORE_INITS for i in self.mft_inits):
            raise ConfigError(f"--mft-inits {','.join(self.mft_inits) or '(empty)'} must name one or more of "
                              f"{', '.join(SCORE_INITS)}")
        if not self.mft_score_lrs or not all(lr > 0 for lr in self.mft_score_lrs):
            raise ConfigError(f"--mft-score-lrs {','.join(f'{lr:g}' for lr in self.mft_score_lrs) or '(empty)'} must "
                              "be one or more positive rates, e.g. 1e-3,1e-2")
        if not (isinstance(self.random_seeds, int) and 1 <= self.random_seeds <= 20):
            raise ConfigError(f"--random-seeds {self.random_seeds} is outside 1..20; use e.g. 3 for mean and spread")

    @property
    def mft_variants(self) -> list[tuple[str, float]]:
        """(score init, score learning rate) of every MFT variant, in grid order."""
        return [(init, lr) for init in self.mft_inits for lr in self.mft_score_lrs]

    @property
    def sizes(self) -> SplitSizes:
        return SplitSizes(100, 40, 60) if self.quick else SplitSizes(200, 100, 200)

    @property
    def budget(self) -> steps.TrainingBudget:
        quick = steps.TrainingBudget(fft_epochs=6, mft_epochs=3, lora_epochs=4, eval_every=8)
        return quick if self.quick else steps.TrainingBudget()

    @property
    def backbone(self) -> str:
        """Preset the backbone is pre-trained from: 0.76M parameters, or 0.2M for --quick."""
        return "micro-llama" if self.quick else "tiny-llama"

    @property
    def pretrain_per_domain(self) -> int:
        return 150 if self.quick else 600

    @property
    def landscape_grid(self) -> tuple[int, int]:
        return (5, 5) if self.quick else (9, 9)


@dataclass
class DemoProgress:
    step: int
    total: int
    message: str


def lora_available() -> bool:
    return importlib.util.find_spec("peft") is not None


def _train_config(budget: steps.TrainingBudget, **kw) -> TrainConfig:
    return TrainConfig(batch_size=budget.batch_size, max_seq_len=budget.max_seq_len, eval_every=budget.eval_every,
                       log_every=budget.eval_every, warmup_ratio=0.05, **kw)


def _domain_runs(config: DemoConfig, seed: int, domain: str, data: dict, backbone: str, say) -> dict:
    """Train every method of one domain and seed; returns run summaries and method sources."""
    b, root = config.budget, os.path.join(config.out, f"seed-{seed}", domain)
    files = data[domain]
    common = dict(data=files["train"], eval_data=files["validation"], seed=seed)
    say(f"{domain} (seed {seed}): full fine-tuning from the backbone")
    fft = steps.run_training(os.path.join(root, "fft"), _train_config(
        b, model=backbone, out=os.path.join(root, "fft"), method="fft", lr=b.fft_lr, epochs=b.fft_epochs, **common))
    best = os.path.join(root, "fft", "best")
    n_train = config.sizes.train
    mft_steps = max(1, round(b.mft_epochs * n_train / b.batch_size))
    say(f"{domain} (seed {seed}): continued fine-tuning from the best checkpoint (step {fft['best_step']})")
    cont = steps.run_training(os.path.join(root, "continued"), _train_config(
        b, model=best, out=os.path.join(root, "continued"), method="fft", lr=b.fft_lr, max_steps=mft_steps, **common))

    def mft_config(out: str, score_init: str, score_lr: float) -> TrainConfig:
        return _train_config(b, model=best, out=out, method="mask", layers=config.layers, mask_ratio=config.mask_ratio,
                             score_init=score_init, score_lr=score_lr, max_steps=mft_steps,
                             save_every=max(1, mft_steps // 6), keep_checkpoints=100, **common)

    variants = recipe.train_variants(config, root, best, mft_config, mft_steps, say, f"{domain} (seed {seed})")
    runs = {"fft": fft, "continued_fft": cont}
    # Continued FFT's length is chosen on validation too: its best checkpoint.
    sources = {"backbone": (backbone, None), "fft": (best, None),
               "continued_fft": (os.path.join(root, "continued", "best"), None)}
    draws = recipe.random_draws(root, best, config, seed)
    sources["random"] = (best, draws[0][1])
    sources["magnitude"] = (best, steps.make_baseline_mask(os.path.join(root, "baselines"), best, "magnitude",
                                                            config.mask_ratio, config.layers, seed))
    for kind in steps.PRUNING_KINDS:  # pruning criteria, calibrated on the domain's training data (issue 12)
        sources[kind] = (best, steps.make_pruning_mask(os.path.join(root, "baselines"), best, kind, config.mask_ratio,
                                                       config.layers, files["train"], b.max_seq_len))
    if lora_available():
        say(f"{domain} (seed {seed}): LoRA from the backbone")
        runs["lora"] = steps.run_training(os.path.join(root, "lora"), _train_config(
            b, model=backbone, out=os.path.join(root, "lora"), method="lora", lr=b.lora_lr, epochs=b.lora_epochs,
            layers=None, lora_r=8, lora_alpha=16, lora_dropout=0.0, **common))
        sources["lora"] = ("lora", runs["lora"]["output"])
    return {"runs": runs, "sources": sources, "root": root, "mft_steps": mft_steps, "variants": variants,
            "random_draws": draws}


def _evaluate_all(config: DemoConfig, domain_runs: dict, data: dict, backbone: str, say) -> dict:
    """scores[train_domain][method][test_domain] = {exact_match, loss, ...} for one seed."""
    b = config.budget
    tests = {d: data[d]["test"] for d in config.domains}
    scores = {}
    for domain, info in domain_runs.items():
        scores[domain] = {}
        folder, val = os.path.join(info["root"], "eval"), data[domain]["validation"]
        for method, (model_dir, extra) in info["sources"].items():
            say(f"{domain}: scoring {METHOD_NAMES[method]} on every test set")
            if method == "lora":
                load = (lambda extra=extra: steps.load_lora_model(extra, backbone))
            else:
                load = (lambda model_dir=model_dir, extra=extra: steps.load_method_model(model_dir, extra))
            if method == "random" and len(info["random_draws"]) > 1:
                results = [steps.evaluate_method(folder, "random" if k == 0 else f"random-seed{s}",
                                                 lambda path=path: steps.load_method_model(model_dir, path), tests, val,
                                                 b.max_seq_len) for k, (s, path) in enumerate(info["random_draws"])]
                scores[domain][method] = recipe.combine_draws(results, [s for s, _ in info["random_draws"]])
                continue
            scores[domain][method] = steps.evaluate_method(folder, method, load, tests, val, b.max_seq_len)
        scores[domain]["mft"] = _choose_mft(info, domain, folder, tests, val, b.max_seq_len, say)
    return scores


def _choose_mft(info: dict, domain: str, folder: str, tests: dict, val: str, max_seq_len: int, say) -> dict:
    """Score every MFT variant, choose on validation loss, and make the chosen one the method `mft`."""
    best_dir, _ = info["sources"]["fft"]
    scored = {}
    for name, run in info["variants"].items():
        say(f"{domain}: scoring MFT ({recipe.describe(name)}) on every test set")
        scored[name] = steps.evaluate_method(folder, f"mft-{name}",
                                             lambda path=run["source"]: steps.load_method_model(best_dir, path),
                                             tests, val, max_seq_len)
    chosen = recipe.choose_variant(scored)
    info["selected"] = chosen
    info["runs"]["mft"] = info["variants"][chosen]
    info["sources"]["mft"] = (best_dir, info["variants"][chosen]["source"])
    info["variant_scores"] = scored
    return dict(scored[chosen], method="mft", variant=chosen)


def _prepare_data(config: DemoConfig, say) -> dict:
    folder = os.path.join(config.out, "data")
    done = steps.cached(folder)
    if done is not None:
        return done
    say("writing the tiny benchmark (math, code, instruct) and the pre-training mixture")
    paths = write_benchmark(folder, config.seed, config.sizes)
    paths["pretrain"] = write_jsonl(pretraining_records(config.pretrain_per_domain, config.seed),
                                    os.path.join(folder, "pretrain.jsonl"))
    return steps.finish(folder, paths)


def _backbone(config: DemoConfig, data: dict, say) -> str:
    folder = os.path.join(config.out, "backbone")
    say(f"pre-training the backbone ({config.backbone}) on the easy variants of every domain")
    run = steps.run_training(folder, TrainConfig(
        model=config.backbone, data=data["pretrain"], out=folder, method="fft", lr=3e-3, epochs=3.0 if not config.quick else 2.0,
        batch_size=32, max_seq_len=128, warmup_ratio=0.05, log_every=20, seed=config.seed))
    return run["output"]


def run_protocol(config: DemoConfig, progress: Callable[[DemoProgress], None] | None = None) -> dict:
    """Run (or resume) the whole protocol; returns the index written to `out/demo.json`."""
    from mftlab.recipes import protocol_analysis

    os.makedirs(config.out, exist_ok=True)
    started = time.perf_counter()
    seeds = list(range(config.seed, config.seed + config.seeds))
    # trainings + scorings per domain and seed
    per_domain = 7 + len(steps.PRUNING_KINDS) + 2 * len(config.mft_variants) + 2 * int(lora_available())
    total = 2 + len(seeds) * len(config.domains) * per_domain + 3 * len(config.domains) + 1
    counter = {"n": 0}

    def say(message: str) -> None:
        counter["n"] += 1
        if progress:
            progress(DemoProgress(min(counter["n"], total), total, message))

    data = _prepare_data(config, say)
    backbone = _backbone(config, data, say)
    per_seed = {}
    for seed in seeds:
        runs = {d: _domain_runs(config, seed, d, data, backbone, say) for d in config.domains}
        per_seed[seed] = {"runs": runs, "scores": _evaluate_all(config, runs, data, backbone, say)}
    variants = {str(s): {d: {"selected": info["selected"], "variants": {
        name: {"score_init": run["score_init"], "score_lr": run["score_lr"], "best_step": run["best_step"],
               "step0_loss": next((p["eval_loss"] for p in run["curve"] if p["step"] == 0), None),
               **info["variant_scores"][name]} for name, run in info["variants"].items()}}
        for d, info in v["runs"].items()} for s, v in per_seed.items()}
    analysis = protocol_analysis.analyse(config, per_seed[seeds[0]]["runs"], data, backbone, say)
    index = {
        "kind": "demo",
        "mftlab_version": __version__,
        "config": {**asdict(config), "sizes": asdict(config.sizes), "budget": asdict(config.budget),
                   "landscape_grid": list(config.landscape_grid)},
        "domains": list(config.domains),
        "methods": [m for m in METHODS if all(m in s["scores"][d] for s in per_seed.values() for d in config.domains)],
        "method_names": METHOD_NAMES,
        "seeds": seeds,
        "scores": {str(s): v["scores"] for s, v in per_seed.items()},
        "curves": {d: {m: r for m, r in per_seed[seeds[0]]["runs"][d]["runs"].items()} for d in config.domains},
        "analysis": analysis,
        "mft_variants": variants,
        "selected_on": "validation loss (test numbers are not used to choose)",
        "lora": lora_available(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_json(os.path.join(config.out, "demo.json"), index)
    return index
