"""The analysis half of the demo: stats, dynamics and overlap of the MFT masks, the MFT mask against
the pruning criteria, and the loss landscape through FFT best / continued FFT / MFT for every
domain (first seed only; each analysis runs when its methods and domains are in the config).

Results are written as the analysis commands write them (`stats.json`, `dynamics.json`,
`overlap.json`, `reference_overlap.json`, `landscape.json`/`.npz`), so `mftlab plot` redraws
them like any other.
"""

from __future__ import annotations

import os

from mftlab.analysis.directions import DirectionSpec
from mftlab.analysis.dynamics import mask_dynamics, run_masks
from mftlab.analysis.landscape import LandscapeConfig, loss_landscape
from mftlab.analysis.landscape_data import load_eval_data
from mftlab.analysis.overlap import compare_masks
from mftlab.analysis.reference_overlap import correlate_with_run, reference_overlap
from mftlab.analysis.stats import compute_mask_stats
from mftlab.mask.maskfile import load_mask
from mftlab.models.loading import load_model
from mftlab.progress.events import StepProgress
from mftlab.recipes import steps
from mftlab.recipes.methods import NAMES

CRITERIA = {"wanda": "Wanda", "snip": "SNIP", "magnitude": "magnitude", "random": "random"}  # source -> label


def _stats(folder: str, mask_path: str, fft_dir: str, backbone: str, run_dir: str) -> str:
    if steps.cached(folder) is None:
        steps.fresh(folder)
        mask = load_mask(mask_path)
        result = compute_mask_stats(mask, load_model(fft_dir).model, load_model(backbone).model, source=mask_path)
        result.save(folder)
        paths, step_list, labels = run_masks(run_dir)
        dynamics = mask_dynamics(paths, step_list, labels)
        dynamics.save(folder)
        steps.finish(folder, {"stats": "stats.json", "dynamics": "dynamics.json"})
    return folder


def _overlap(folder: str, masks: dict[str, str]) -> str:
    if steps.cached(folder) is None:
        steps.fresh(folder)
        # Each domain's mask is bound to its own FFT model: compare the shared tensor names.
        result = compare_masks(list(masks.values()), list(masks), force=True)
        result.save(folder)
        steps.finish(folder, {"overlap": "overlap.json"})
    return folder


def _criteria(folder: str, mft_mask: str, run_dir: str, *, sources: dict, fft_dir: str, calibration_file: str) -> str:
    """The MFT mask against each pruning criterion (and the random mask), with rank correlations."""
    if steps.cached(folder) is None:
        steps.fresh(folder)
        labels = [label for kind, label in CRITERIA.items() if kind in sources]
        paths = [sources[kind][1] for kind in CRITERIA if kind in sources]
        result = reference_overlap(mft_mask, paths, labels)
        correlate_with_run(result, paths, run_dir, load_model(fft_dir), data=calibration_file)
        result.save(folder)
        steps.finish(folder, {"criteria": "reference_overlap.json"})
    return folder


def _landscape(
    folder: str, *, fft_dir: str, continued_dir: str, mask_path: str, files, settings, max_seq_len: int, runner
):
    if steps.cached(folder) is None:
        steps.fresh(folder)
        runner.landscape(
            folder,
            {
                "fft_dir": fft_dir,
                "continued_dir": continued_dir,
                "mask_path": mask_path,
                "train": files.train,
                "test": files.test,
                "grid": list(settings.grid),
                "tokens": settings.tokens,
                "margin": settings.margin,
                "max_seq_len": max_seq_len,
                "batch_size": runner.runtime.eval_batch_size,
            },
        )
        steps.finish(folder, {"landscape": "landscape.json"})
    return folder


def run_landscape_job(folder: str, job: dict, *, device="cpu", dtype: str = "auto", launch=None, report=None) -> None:
    """The plane through FFT best, continued FFT and MFT into `folder`; under a launch its points are
    dealt over the processes (`launch`: mftlab.models.device.Launch). `report`: progress events of the
    points this process computes."""
    load = {"device": device, "dtype": dtype}
    live = load_model(job["fft_dir"], **load)
    batch = job.get("batch_size")  # the runtime's eval_batch_size, else 64
    data = dict(max_seq_len=job["max_seq_len"], batch_size=batch or 64, max_tokens=job["tokens"], device=device)
    train = load_eval_data(job["train"], live.tokenizer, **data)
    test = load_eval_data(job["test"], live.tokenizer, **data)
    config = LandscapeConfig(
        plane="models", grid=tuple(job["grid"]), directions=DirectionSpec(seed=0), margin=job["margin"]
    )
    models = [
        live.model,
        lambda: load_model(job["continued_dir"], **load).model,
        lambda: steps.load_method_model(job["fft_dir"], job["mask_path"], **load)[0],
    ]
    spread = {} if launch is None else {"rank": launch.rank, "world_size": launch.world_size, "barrier": launch.barrier}
    label = f"loss landscape ({os.path.basename(folder)})"
    shown = None if report is None else (lambda kind, data: _point(report, label, kind, data))
    names = [NAMES[m] for m in ("fft", "continued_fft", "mft")]
    loss_landscape(models, train, test, config, folder, labels=names, progress=shown, **spread)


def _point(report, label: str, kind: str, data: dict) -> None:
    """The landscape's own progress calls as progress events of its points."""
    if kind == "point":
        report(StepProgress(label, "point", data["done"], data["total"]))


def analyse(config, out: str, runs: dict, backbone: str, *, say, runner) -> dict:
    """Run every analysis of the first seed; returns folder paths relative to `out`."""
    root = os.path.join(out, "analysis")
    result = {"stats": {}, "landscape": {}, "criteria": {}}
    masks = {}
    for domain, info in runs.items():
        fft_dir, _ = info["sources"]["fft"]
        _, mask_path = info["sources"]["mft"]  # the variant chosen on validation, its best checkpoint
        masks[domain] = mask_path
        say(f"{domain}: mask statistics and training dynamics")
        result["stats"][domain] = os.path.relpath(
            _stats(os.path.join(root, f"stats-{domain}"), mask_path, fft_dir, backbone, info["runs"]["mft"]["folder"]),
            out,
        )
    for domain, info in runs.items():
        say(f"{domain}: MFT mask vs pruning criteria (Wanda, SNIP, magnitude)")
        if not any(kind in info["sources"] for kind in CRITERIA):
            continue
        result["criteria"][domain] = os.path.relpath(
            _criteria(
                os.path.join(root, f"criteria-{domain}"),
                info["sources"]["mft"][1],  # the chosen variant's mask
                info["runs"]["mft"]["folder"],  # its run folder holds the checkpoints (scores)
                sources=info["sources"],
                fft_dir=info["sources"]["fft"][0],
                calibration_file=config.domains[domain].train,
            ),
            out,
        )
    if len(masks) > 1:
        say("overlap of the domain masks")
        result["overlap"] = os.path.relpath(_overlap(os.path.join(root, "overlap"), masks), out)
    for domain, info in runs.items():
        if "continued_fft" not in info["sources"]:
            break
        say(f"{domain}: loss landscape through FFT best, continued FFT and MFT")
        fft_dir, _ = info["sources"]["fft"]
        result["landscape"][domain] = os.path.relpath(
            _landscape(
                os.path.join(root, f"landscape-{domain}"),
                fft_dir=fft_dir,
                continued_dir=info["sources"]["continued_fft"][0],
                mask_path=info["sources"]["mft"][1],
                files=config.domains[domain],
                settings=config.landscape,
                max_seq_len=config.training.max_seq_len,
                runner=runner,
            ),
            out,
        )
    return result
