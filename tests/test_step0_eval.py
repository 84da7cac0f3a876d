"""Step-0 evaluation of `train --method mask --eval-data`: logged, equal to `mftlab eval --mask` of the
initial mask, warned about when the initial prune hurts, and not redone on --resume."""

import json

import pytest
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.mask.maskfile import save_mask
from mftlab.mft.masking import SelectionConfig, attach_masks, export_mask, refresh_masks
from mftlab.mft.targeting import TargetSpec, resolve_targets
from mftlab.models.loading import load_model
from mftlab.training.step0 import step0_warning

FAST = ["--batch-size", "4", "--score-lr", "0.05", "--max-seq-len", "32", "--log-every", "1"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def files(tmp_path):
    lines = [json.dumps({"prompt": f"{a}+{b}=", "completion": str(a + b)}) for a in range(6) for b in range(6)]
    (tmp_path / "train.jsonl").write_text("\n".join(lines[:24]) + "\n")
    (tmp_path / "val.jsonl").write_text("\n".join(lines[24:]) + "\n")
    return tmp_path / "train.jsonl", tmp_path / "val.jsonl"


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _initial_mask(model_dir, path, ratio, init, seed=0):
    """The step-0 mask exactly as the trainer draws it, exported to a file."""
    model = load_model(model_dir).model
    layers = attach_masks(
        model, resolve_targets(model, TargetSpec.parse("all-linear")), score_init=init, score_std=0.02, seed=seed
    )
    refresh_masks(layers, SelectionConfig(mask_ratio=ratio))
    save_mask(export_mask(layers, model_dir, {"name": "step0"}), path)
    return path


@pytest.mark.parametrize("init", ["random", "magnitude"])
def test_step0_row_equals_eval_of_the_initial_mask(llama_dir, files, tmp_path, init):
    train, val = files
    out = tmp_path / "run"
    result = invoke(
        "train",
        llama_dir,
        "--data",
        train,
        "--eval-data",
        val,
        "--eval-every",
        "2",
        "--out",
        out,
        "--max-steps",
        "2",
        "--mask-ratio",
        "0.3",
        "--score-init",
        init,
        *FAST,
    )
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert rows[0]["step"] == 0 and [r["step"] for r in rows[1:]] == [1, 2]
    mask = _initial_mask(llama_dir, tmp_path / "step0.safetensors", 0.3, init)
    masked = invoke("eval", llama_dir, "--mask", mask, "--data", val, "--max-seq-len", "32", "--no-generate", "--json")
    plain = invoke("eval", llama_dir, "--data", val, "--max-seq-len", "32", "--no-generate", "--json")
    assert masked.exit_code == 0 and plain.exit_code == 0, masked.output + plain.output
    assert rows[0]["eval_loss"] == pytest.approx(json.loads(masked.output)["loss"], rel=1e-6)
    assert rows[0]["eval_loss_unmasked"] == pytest.approx(json.loads(plain.output)["loss"], rel=1e-6)
    assert rows[0]["eval_loss"] != pytest.approx(rows[0]["eval_loss_unmasked"], rel=1e-9)  # the mask did something


def test_heavy_initial_prune_is_warned_about_and_resume_does_not_redo_step0(llama_dir, files, tmp_path):
    train, val = files
    # A model that has learnt the task a little, so a 90% random prune costs far more than 10%.
    fft = tmp_path / "fft"
    assert (
        invoke(
            "train",
            llama_dir,
            "--method",
            "fft",
            "--lr",
            "0.01",
            "--data",
            train,
            "--out",
            fft,
            "--max-steps",
            "30",
            "--batch-size",
            "8",
            "--max-seq-len",
            "32",
        ).exit_code
        == 0
    )
    out = tmp_path / "run"
    args = ["--data", train, "--eval-data", val, "--out", out, "--mask-ratio", "0.9", "--save-every", "1", *FAST]
    result = invoke("train", fft / "model", *args, "--max-steps", "2")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: the step-0 mask")]
    assert len(warnings) == 1 and "--score-init magnitude" in warnings[0], result.output
    row = _rows(out)[0]
    assert row["eval_loss"] > 1.1 * row["eval_loss_unmasked"]
    resumed = invoke("train", fft / "model", *args, "--max-steps", "3", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "step-0 mask" not in resumed.output
    assert [r["step"] for r in _rows(out)] == [0, 1, 2, 3]


def test_step0_warning_threshold():
    assert step0_warning(1.05, 1.0, "random") is None
    assert "--score-init magnitude" in step0_warning(1.2, 1.0, "random")
    assert "+20%" in step0_warning(1.2, 1.0, "random")
    assert "--score-init magnitude" not in step0_warning(1.2, 1.0, "magnitude")
