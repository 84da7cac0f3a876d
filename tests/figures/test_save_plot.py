"""Every result type saves itself through the results contract, and `mftlab plot` draws it back.

A folder written from Python with `result.save(folder)` holds the same files as one written by the
CLI command, and both plot to the same figures. Reading a file of the wrong kind, or a damaged
one, is a one-line error.
"""

import os

import numpy as np
import torch
from click.testing import CliRunner

import mftlab
from mftlab.analysis.dynamics import mask_dynamics, run_masks
from mftlab.analysis.landscape import LandscapeConfig, loss_landscape, prepare_data
from mftlab.analysis.reference_overlap import reference_overlap
from mftlab.cli.main import main
from mftlab.files.results import RESULT_KINDS, read_arrays, read_result, write_result
from mftlab.mask.maskfile import Mask, save_mask
from mftlab.models.presets import _llama_config
from mftlab.training.data import Example

SHAPES = {f"model.layers.{i}.mlp.{p}_proj.weight": (12, 10) for i in range(2) for p in ("up", "down")}
RESULT_FILES = {name for f in RESULT_KINDS.values() for name in (f.json, f.csv, f.arrays) if name}


def write_masks(folder, names, seed=0):
    g = torch.Generator().manual_seed(seed)
    paths = []
    for name in names:
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_mask(Mask.from_keep({k: torch.rand(s, generator=g) > 0.25 for k, s in SHAPES.items()}), path)
        paths.append(path)
    return paths


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def result_files(folder):
    return {
        name: open(os.path.join(folder, name), "rb").read()
        for name in sorted(os.listdir(folder))
        if name in RESULT_FILES
    }


def same_files_and_figures(python_dir, cli_dir):
    """Identical result files, and `mftlab.plot` / `mftlab plot` draw the same figures from each."""
    assert result_files(python_dir) == result_files(cli_dir) != {}
    drawn = sorted(os.path.relpath(p, python_dir) for p in mftlab.plot(python_dir))
    printed = cli("plot", cli_dir).output.split()
    assert drawn == sorted(os.path.relpath(p, cli_dir) for p in printed) != []
    return drawn


def test_stats_and_dynamics(tmp_path):
    run = tmp_path / "run"
    *_, final = write_masks(
        run,
        ["checkpoints/step-000001/mask.safetensors", "checkpoints/step-000002/mask.safetensors", "mask.safetensors"],
    )
    python_dir = tmp_path / "python"
    saved = mftlab.mask_stats(final).save(python_dir) + mask_dynamics(*run_masks(run)).save(python_dir)
    assert [os.path.basename(p) for p in saved] == ["stats.json", "stats.csv", "dynamics.json", "dynamics.csv"]
    cli("stats", "--run", run, "--out", tmp_path / "cli", "--no-figures")
    drawn = same_files_and_figures(python_dir, tmp_path / "cli")
    assert {"stats_heatmap.png", "dynamics_flips.html"} <= set(drawn)
    assert read_result(python_dir, "dynamics")["labels"] == ["step 1", "step 2", "final"]


def test_overlap(tmp_path):
    paths = write_masks(tmp_path, ["a.safetensors", "b.safetensors", "c.safetensors"])
    mftlab.compare_masks(paths, labels=["math", "code", "chat"]).save(tmp_path / "python")
    cli("compare-masks", *paths, "--labels", "math,code,chat", "--out", tmp_path / "cli", "--no-figures")
    assert "overlap_matrix.png" in same_files_and_figures(tmp_path / "python", tmp_path / "cli")


def test_reference_overlap(tmp_path):
    ref, *others = write_masks(tmp_path, ["mft.safetensors", "wanda.safetensors", "random.safetensors"])
    saved = reference_overlap(ref, others, ["Wanda", "random"]).save(tmp_path / "python")
    assert [os.path.basename(p) for p in saved] == ["reference_overlap.json", "reference_overlap.csv"]
    cli(
        "compare-masks",
        "--reference",
        ref,
        *others,
        "--labels",
        "Wanda,random",
        "--out",
        tmp_path / "cli",
        "--no-figures",
    )
    assert "criteria_overlap.png" in same_files_and_figures(tmp_path / "python", tmp_path / "cli")


def _model(seed):
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(_llama_config(hidden=32, layers=1, heads=2, kv_heads=1)).eval()


def test_landscape(tmp_path):
    """The CLI's landscape files are the ones `landscape` writes into --out; a saved copy plots the same."""
    data = prepare_data([Example([1, 10 + i, 11, 12], [-100, 10 + i, 11, 12], [1]) for i in range(2)], 0, 2)
    result = loss_landscape([_model(0), _model(1)], data, data, LandscapeConfig("line", (3, 1)), tmp_path / "run")
    saved = result.save(tmp_path / "copy")
    assert sorted(os.path.basename(p) for p in saved) == ["landscape.json", "landscape.npz"]
    assert result.save(tmp_path / "run") == [
        str(tmp_path / "run" / "landscape.json"),
        str(tmp_path / "run" / "landscape.npz"),
    ]  # already there
    a, b = read_arrays(tmp_path / "run", "landscape"), read_arrays(tmp_path / "copy", "landscape")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)
    assert same_files_and_figures(tmp_path / "copy", tmp_path / "run") == ["landscape_1d.pdf", "landscape_1d.png"]


def test_sweep(tmp_path):
    points = [
        {
            "name": f"ratio-{r}",
            "label": str(r),
            "value": r,
            "loss": 1.0 + r,
            "answer_accuracy": 0.5,
            "step0_loss": 2.0,
            "selected": r == 0.1,
        }
        for r in (0.1, 0.2)
    ]
    doc = {"axis": "ratio", "points": points, "reference": {"loss": 1.5, "answer_accuracy": 0.4}}
    paths = write_result(tmp_path, "sweep", doc, rows=points)
    assert [os.path.basename(p) for p in paths] == ["sweep.json", "sweep.csv"]
    assert (tmp_path / "sweep.csv").read_text().splitlines()[
        0
    ] == "name,label,value,loss,answer_accuracy,step0_loss,selected"
    assert sorted(os.path.basename(p) for p in mftlab.plot(tmp_path)) == [
        "sweep_ratio.html",
        "sweep_ratio.pdf",
        "sweep_ratio.png",
    ]


def _plot_error(folder):
    result = CliRunner().invoke(main, ["plot", str(folder)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_plot_refuses_a_file_of_the_wrong_kind(tmp_path):
    paths = write_masks(tmp_path, ["a.safetensors", "b.safetensors"])
    mftlab.compare_masks(paths).save(tmp_path / "out")
    os.rename(tmp_path / "out" / "overlap.json", tmp_path / "out" / "stats.json")
    line = _plot_error(tmp_path / "out")
    assert line.startswith(
        f"Error: result file '{tmp_path / 'out' / 'stats.json'}' holds 'mftlab.overlap' results, "
        "not 'mftlab.stats' results; pass a folder written by `mftlab stats`"
    ), line


def test_plot_refuses_a_damaged_file(tmp_path):
    paths = write_masks(tmp_path, ["a.safetensors", "b.safetensors"])
    written = mftlab.compare_masks(paths).save(tmp_path / "out")
    with open(written[0], "r+b") as f:
        f.truncate(os.path.getsize(written[0]) // 2)
    line = _plot_error(tmp_path / "out")
    assert line.startswith(f"Error: result file '{written[0]}' is not valid JSON (") and "compare-masks" in line, line
