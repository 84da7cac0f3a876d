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
from mftlab.progress.run_state import RunState
from mftlab.recipes import benchmarks, protocol_runs, steps
from mftlab.recipes import variants as recipe
from mftlab.recipes.methods import METHODS, NAMES, describe_methods
from mftlab.recipes.protocol_config import ProtocolConfig, config_to_dict
from mftlab.recipes.step_runner import ScoreJob, StepRunner
from mftlab.training.data import read_rows


@dataclass
class ProtocolProgress:
    step: int
    total: int
    message: str
    eta_seconds: float | None = None  # the whole run's time left (mftlab.progress.run_state), when known


def lora_available() -> bool:
    return importlib.util.find_spec("peft") is not None


def runs_lora(config: ProtocolConfig) -> bool:
    return "lora" in config.methods and lora_available()


def _training_message(config: ProtocolConfig, run: protocol_runs.TrainingRun, where: str, runs: dict) -> str:
    """What the protocol says before training `run` (FFT, continued FFT or an MFT variant)."""
    if run.key == "fft":
        return f"{where}: full fine-tuning from the backbone"
    if run.key == "continued_fft":
        return f"{where}: continued fine-tuning from the best checkpoint (step {runs['fft']['best_step']})"
    return f"{where}: MFT ({recipe.describe(run.key)}) on layers {config.layers} at mask ratio {config.mask_ratio}"


def _mask_baselines(config: ProtocolConfig, root: str, seed: int, domain: str, runner: StepRunner) -> tuple[dict, list]:
    """The mask baselines asked for (random draws, magnitude, Wanda, SNIP), each a mask of FFT's best model:
    their sources by method, and the random draws as (mask seed, path)."""
    methods, best, folder = config.methods, os.path.join(root, "fft", "best"), os.path.join(root, "baselines")
    place = runner.placement()
    draws = recipe.random_draws(root, best, config, seed, **place) if "random" in methods else []
    sources = {"random": (best, draws[0][1])} if draws else {}
    if "magnitude" in methods:
        mask = steps.make_baseline_mask(folder, best, "magnitude", config.mask_ratio, config.layers, seed=seed, **place)
        sources["magnitude"] = (best, mask)
    for kind in [k for k in steps.PRUNING_KINDS if k in methods]:  # calibrated on the domain's training data
        mask = steps.make_pruning_mask(
            folder,
            best,
            kind,
            config.mask_ratio,
            config.layers,
            calibration_file=config.domains[domain].train,
            max_seq_len=config.training.max_seq_len,
            calibration_tokens=config.calibration_tokens,
            batch_size=config.runtime.calibration_batch_size,
            report=runner.report,
            **place,
        )
        sources[kind] = (best, mask)
    return sources, draws


def _domain_runs(
    config: ProtocolConfig, out: str, seed: int, domain: str, backbone: str, *, say, runner: StepRunner
) -> dict:
    """Train every method of one domain and seed; returns run summaries and method sources."""
    root, methods, where = protocol_runs.domain_root(out, seed, domain), config.methods, f"{domain} (seed {seed})"
    planned = protocol_runs.domain_runs(config, out, seed, domain, backbone, lora=runs_lora(config))
    runs, variants = {}, {}
    for run in [r for r in planned if r.key != "lora"]:
        say(_training_message(config, run, where, runs))
        summary = runner.train(run.label, run.folder, run.config)
        if run.score_init is None:
            runs[run.key] = summary
        else:  # the mask MFT contributes is the best-on-validation checkpoint, as for FFT and continued FFT
            variants[run.key] = dict(
                summary,
                source=os.path.join(run.folder, "best", "mask.safetensors"),
                folder=run.folder,
                score_init=run.score_init,
                score_lr=run.score_lr,
            )
    sources = {"backbone": (backbone, None)} if "backbone" in methods else {}
    sources["fft"] = (os.path.join(root, "fft", "best"), None)
    if "continued_fft" in methods:  # continued FFT's length is chosen on validation too: its best checkpoint
        sources["continued_fft"] = (os.path.join(root, "continued", "best"), None)
    baselines, draws = _mask_baselines(config, root, seed, domain, runner)
    sources.update(baselines)
    for run in [r for r in planned if r.key == "lora"]:
        say(f"{where}: LoRA from the backbone")
        runs["lora"] = runner.train(run.label, run.folder, run.config)
        sources["lora"] = ("lora", runs["lora"]["output"])
    return {
        "runs": runs,
        "sources": sources,
        "root": root,
        "mft_steps": protocol_runs.mft_steps(config, domain),
        "variants": variants,
        "random_draws": draws,
    }


def _job(method: str, model_dir: str, extra, backbone: str, name: str | None = None) -> ScoreJob:
    """What to load to score `method` (saved as eval-`name or method`.json)."""
    if method == "lora":
        return ScoreJob(name or method, backbone, adapter=extra)
    return ScoreJob(name or method, model_dir, mask=extra)


def _score_jobs(info: dict, backbone: str) -> dict[str, list[ScoreJob]]:
    """What to score for each method of one domain (the random draws each; every MFT variant as mft-NAME)."""
    jobs = {}
    for method, (model_dir, extra) in info["sources"].items():
        if method == "random" and len(info["random_draws"]) > 1:
            jobs[method] = [
                _job(method, model_dir, path, backbone, "random" if k == 0 else f"random-seed{s}")
                for k, (s, path) in enumerate(info["random_draws"])
            ]
        else:
            jobs[method] = [_job(method, model_dir, extra, backbone)]
    best_dir = info["sources"]["fft"][0]
    for name, run in info["variants"].items():
        jobs[f"mft-{name}"] = [ScoreJob(f"mft-{name}", best_dir, mask=run["source"])]
    return jobs


def _evaluate_all(config: ProtocolConfig, domain_runs: dict, backbone: str, say, runner: StepRunner) -> dict:
    """scores[train_domain][method][test_domain] = {exact_match, loss, ...} for one seed."""
    max_seq_len = config.training.max_seq_len
    tests = {d: files.test for d, files in config.domains.items()}
    scores = {}
    for domain, info in domain_runs.items():
        scores[domain] = {}
        folder, val = os.path.join(info["root"], "eval"), config.domains[domain].validation

        def score(label: str, jobs: list[ScoreJob], domain=domain, folder=folder, val=val) -> list[dict]:
            results = runner.score(f"{domain}: scoring {label}", folder, jobs, tests, val, max_seq_len=max_seq_len)
            return [results[j.name] for j in jobs]

        jobs = _score_jobs(info, backbone)
        every = [j for group in jobs.values() for j in group]
        runner.score_ahead(f"{domain}: scoring {len(every)} models", folder, every, tests, val, max_seq_len=max_seq_len)
        for method in info["sources"]:
            say(f"{domain}: scoring {NAMES[method]} on every test set")
            results = score(NAMES[method], jobs[method])
            if method == "random" and len(results) > 1:
                scores[domain][method] = recipe.combine_draws(results, [s for s, _ in info["random_draws"]])
            else:
                scores[domain][method] = results[0]
        scores[domain]["mft"] = _choose_mft(info, domain, say, score, jobs)
    return scores


def _choose_mft(info: dict, domain: str, say, score, jobs: dict) -> dict:
    """Score every MFT variant, choose on validation loss, and make the chosen one the method `mft`."""
    best_dir, _ = info["sources"]["fft"]
    scored = {}
    for name in info["variants"]:
        say(f"{domain}: scoring MFT ({recipe.describe(name)}) on every test set")
        scored[name] = score(f"MFT ({recipe.describe(name)})", jobs[f"mft-{name}"])[0]
    chosen = recipe.choose_variant(scored)
    info["selected"] = chosen
    info["runs"]["mft"] = info["variants"][chosen]
    info["sources"]["mft"] = (best_dir, info["variants"][chosen]["source"])
    info["variant_scores"] = scored
    return dict(scored[chosen], method="mft", variant=chosen)


def _benchmark_all(config: ProtocolConfig, domain_runs: dict, backbone: str, say, runner: StepRunner) -> dict:
    """bench[domain] = {"methods": {method: {task: {metric: value}}}, "higher_is_better": lm-eval's {task: {metric:
    bool}}} on the domain's lm-eval tasks (no entry for a domain without tasks)."""
    bench = {}
    for domain, info in domain_runs.items():
        harness = benchmarks.harness_for(config.domains[domain], config.evaluation)
        if harness is None:
            continue
        say(f"{domain}: lm-eval tasks {', '.join(harness.tasks)} for every method")
        jobs = _score_jobs(info, backbone)
        jobs["mft"] = jobs[f"mft-{info['selected']}"]  # the variant chosen on validation
        wanted = {m: jobs[m] for m in list(info["sources"]) if m in jobs}
        every = [j for group in wanted.values() for j in group]
        folder = os.path.join(info["root"], "eval")
        label = f"{domain}: lm-eval {', '.join(harness.tasks)} ({len(every)} models)"
        entries = runner.benchmark(label, folder, every, harness)
        methods = {}
        for method, group in wanted.items():
            found = [entries[j.name] for j in group]
            methods[method] = (benchmarks.combine_draws(found) if len(found) > 1 else found[0])["metrics"]
        direction = next(iter(entries.values())).get("higher_is_better", {})
        bench[domain] = {"methods": methods, "higher_is_better": direction}
    return bench


def _backbone(config: ProtocolConfig, out: str, say, runner: StepRunner) -> str:
    """The backbone model: the configured one, or the one pre-trained from it on `pretrain.data`."""
    run = protocol_runs.backbone_run(config, out)
    if run is not None:
        say(f"pre-training the backbone ({config.backbone}) on {os.path.basename(config.pretrain.data)}")
        runner.train(run.label, run.folder, run.config)
    return protocol_runs.backbone_model(config, out)


def planned_steps(config: ProtocolConfig) -> int:
    """How many progress messages `run_protocol` sends (trainings, scorings and analyses)."""
    methods, n_variants, lora = config.methods, len(config.mft_variants), int(runs_lora(config))
    scored = len([m for m in methods if m not in ("mft", "lora")]) + lora
    trained = 1 + int("continued_fft" in methods) + n_variants + lora
    per_domain = trained + scored + n_variants
    analyses = len(config.domains) * (2 + int("continued_fft" in methods)) + int(len(config.domains) > 1)
    benchmarked = sum(1 for d in config.domains.values() if d.tasks)  # one message per domain with tasks
    return int(config.pretrain is not None) + config.seeds * (len(config.domains) * per_domain + benchmarked) + analyses


def _benchmark_index(config: ProtocolConfig, per_seed: dict) -> dict:
    """The index's lm-eval part (nothing when no domain names tasks: the demo's index is unchanged)."""
    if not any(d.tasks for d in config.domains.values()):
        return {}
    return {
        "benchmarks": {str(s): v["benchmarks"] for s, v in per_seed.items()},
        "benchmark_tasks": {d: list(files.tasks) for d, files in config.domains.items() if files.tasks},
    }


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
    progress: Callable[[object], None] | None = None,  # ProtocolProgress, and the steps' events
    *,
    done_before: int = 0,
    command: str = "protocol",
    plans: dict[str, float] | None = None,
    schedule: list | None = None,
) -> dict:
    """Run (or resume) the whole protocol into `out`; returns the index written to `out/demo.json`.

    `progress` gets a ProtocolProgress before each step and, from inside the steps, progress events
    (mftlab.progress.events: training steps, examples scored, landscape points, calibration tokens).

    `done_before` progress steps were already reported by the caller (the demo's data step);
    `command` names the command in the index (the report's title); `plans` maps step folders
    (relative to `out`) to their planned peak GiB per GPU, recorded beside what each step measured;
    `schedule` (PlannedStep: folder, kind, planned seconds) lets the run's ETA start from the plan. The
    run's state and ETA are kept in OUT/progress.json (`mftlab status OUT` reads it).
    """
    os.makedirs(out, exist_ok=True)
    started = time.perf_counter()
    seeds = list(range(config.seed, config.seed + config.seeds))
    domains = list(config.domains)
    total = done_before + planned_steps(config)
    counter = {"n": done_before}

    state = RunState(out, command, total, schedule)

    def say(message: str) -> None:
        counter["n"] += 1
        eta = state.begin(min(counter["n"], total), message)
        if progress:
            progress(ProtocolProgress(min(counter["n"], total), total, message, eta))

    try:
        runner = StepRunner(out, config.runtime, plans, state, progress)  # steps report their progress too
        index = _run(
            config, out, command=command, started=started, seeds=seeds, domains=domains, say=say, runner=runner
        )
    except BaseException as exc:  # a failed or interrupted run says where it stopped
        state.fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    state.finish()
    return index


def _run(config, out, *, command, started, seeds, domains, say, runner) -> dict:
    from mftlab.recipes import protocol_analysis, protocol_significance

    backbone = _backbone(config, out, say, runner)
    per_seed = {}
    for seed in seeds:
        runs = {d: _domain_runs(config, out, seed, d, backbone, say=say, runner=runner) for d in domains}
        per_seed[seed] = {"runs": runs, "scores": _evaluate_all(config, runs, backbone, say, runner)}
        per_seed[seed]["benchmarks"] = _benchmark_all(config, runs, backbone, say, runner)
    analysis = protocol_analysis.analyse(config, out, per_seed[seeds[0]]["runs"], backbone, say=say, runner=runner)
    methods = [m for m in METHODS if all(m in s["scores"][d] for s in per_seed.values() for d in domains)]
    significance = protocol_significance.write_significance(out, per_seed, domains, methods)
    if significance is not None:  # MFT - FFT (and - continued FFT) with intervals and tests, for the report
        analysis["significance"] = significance
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
        **_benchmark_index(config, per_seed),
        "curves": {d: {m: r for m, r in per_seed[seeds[0]]["runs"][d]["runs"].items()} for d in domains},
        "analysis": analysis,
        "mft_variants": _variant_index(per_seed),
        "selected_on": "validation loss (test numbers are not used to choose)",
        "lora": runs_lora(config),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_result(out, "demo", index)
    return index
