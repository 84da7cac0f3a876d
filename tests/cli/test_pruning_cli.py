"""`mftlab baseline --kind wanda|snip`: files, metadata, and one `Error:` line for bad input."""

import json
import os

import pytest
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.mask.maskfile import load_mask


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_error(result, match):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert match in result.output, result.output


RECORDS = [
    {"prompt": "2+3=", "completion": "5"},
    {"prompt": "say hi ", "completion": "hello there"},
    {"text": "a plain sentence for calibration."},
]


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "calib.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


@pytest.mark.parametrize("model, kind", [("tiny-gpt2", "wanda"), ("tiny-llama", "snip")])
def test_wanda_and_snip_masks(tmp_path, calib, model, kind):
    out = tmp_path / f"{kind}.safetensors"
    result = invoke(
        "baseline", model, "--kind", kind, "--data", calib, "--max-tokens", 50, "--layers", "1", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert "calibrated on 50 tokens" in result.output
    method = load_mask(out).method
    assert method["name"] == kind and method["calibration"]["tokens"] == 50
    assert method["calibration"]["fingerprint"].startswith("sha256:")
    assert method["selection"] == ("topk-row" if kind == "wanda" else "topk-tensor")
    explicit = tmp_path / "explicit.safetensors"
    assert (
        invoke(
            "baseline",
            model,
            "--kind",
            kind,
            "--data",
            calib,
            "--granularity",
            "global",
            "--layers",
            "1",
            "--out",
            explicit,
        ).exit_code
        == 0
    )
    assert load_mask(explicit).method["selection"] == "topk-global"


def test_bad_calibration_input(tmp_path, calib):
    out = tmp_path / "out" / "m.safetensors"
    os.makedirs(out.parent)
    assert_clean_error(
        invoke("baseline", "tiny-llama", "--kind", "wanda", "--out", out), "--kind wanda needs calibration data"
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_clean_error(
        invoke("baseline", "tiny-llama", "--kind", "snip", "--data", empty, "--out", out), "holds no usable records"
    )
    assert_clean_error(
        invoke("baseline", "tiny-llama", "--kind", "wanda", "--data", calib, "--max-tokens", 0, "--out", out),
        "--max-tokens 0 is too small",
    )
    assert_clean_error(
        invoke("baseline", "tiny-llama", "--kind", "wanda", "--data", calib, "--targets", "embed_tokens", "--out", out),
        "target 'embed_tokens' matches no linear module",
    )
    assert os.listdir(out.parent) == []


def test_compare_masks_reference_with_scores(tmp_path, calib, llama_dir):
    from mftlab.analysis.criteria import run_scores, spearman
    from mftlab.mft.calibration import CalibrationConfig, load_calibration
    from mftlab.mft.pruning_scores import wanda_scores
    from mftlab.mft.targeting import TargetSpec, resolve_targets
    from mftlab.models.loading import load_model
    from mftlab.training.config import TrainConfig
    from mftlab.training.loop import train

    masks = []
    for kind in ("wanda", "snip", "random"):
        masks.append(tmp_path / f"{kind}.safetensors")
        args = ["--data", calib, "--max-tokens", 60] if kind != "random" else []
        assert invoke("baseline", llama_dir, "--kind", kind, "--layers", "1", "--out", masks[-1], *args).exit_code == 0
    run = tmp_path / "run"
    train(
        TrainConfig(
            model=llama_dir,
            data=str(calib),
            out=str(run),
            max_steps=3,
            save_every=2,
            batch_size=2,
            layers="1",
            max_seq_len=64,
        )
    )
    out = tmp_path / "criteria"
    result = invoke(
        "compare-masks",
        "--reference",
        run / "mask.safetensors",
        *masks,
        "--labels",
        "Wanda,SNIP,random",
        "--scores",
        run,
        "--model",
        llama_dir,
        "--data",
        calib,
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "checkpoint step 2" in result.output and "Spearman" in result.output
    data = json.loads((out / "reference_overlap.json").read_text())
    assert data["kind"] == "mftlab.reference_overlap" and data["scores"]["checkpoint_step"] == 2
    overall = {r["mask"]: r for r in data["rows"] if r["level"] == "overall"}
    assert overall["random"]["spearman"] is None
    assert overall["Wanda"]["spearman"] is not None and overall["SNIP"]["spearman"] is not None
    # The recomputed criterion is the mask's own: rho of one tensor equals a direct computation.
    loaded = load_model(llama_dir)
    targets = resolve_targets(loaded.model, TargetSpec.parse("q_proj", "1"))
    calibration = load_calibration(CalibrationConfig(str(calib), max_tokens=60), loaded.tokenizer)
    name = targets[0].param_name
    direct = spearman(run_scores(str(run))[0][name], wanda_scores(loaded.model, targets, calibration)[name])
    row = next(r for r in data["rows"] if r["level"] == "tensor" and r["group"] == name and r["mask"] == "Wanda")
    assert row["spearman"] == pytest.approx(direct, abs=1e-9)
    for ext in ("png", "pdf", "html"):
        assert (out / f"criteria_overlap.{ext}").stat().st_size > 1000
    (out / "criteria_overlap.png").unlink()
    assert invoke("plot", out).exit_code == 0 and (out / "criteria_overlap.png").exists()

    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"prompt": "9+9=", "completion": "18"}) + "\n")
    assert_clean_error(
        invoke(
            "compare-masks",
            "--reference",
            run / "mask.safetensors",
            masks[0],
            "--scores",
            run,
            "--model",
            llama_dir,
            "--data",
            other,
            "--out",
            tmp_path / "x",
        ),
        "is not the calibration data of mask",
    )
    no_ckpt = tmp_path / "no-ckpt"
    no_ckpt.mkdir()
    assert_clean_error(
        invoke(
            "compare-masks",
            "--reference",
            run / "mask.safetensors",
            masks[0],
            "--scores",
            no_ckpt,
            "--out",
            tmp_path / "y",
        ),
        "--save-every",
    )
    usage = invoke("compare-masks", *masks[:2], "--scores", run, "--out", tmp_path / "z")
    assert usage.exit_code == 2 and "go with --reference" in usage.output
