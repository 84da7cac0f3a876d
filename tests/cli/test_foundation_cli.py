"""User mistakes give one line `Error: ...`, exit 1 (2 for usage), no traceback, no partial output."""

import os

import pytest
import torch
from click.testing import CliRunner

from mftlab import __version__
from mftlab.cli.main import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_error(result, match, code=1):
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert match in result.output, result.output


@pytest.fixture
def mask_file(tmp_path):
    path = tmp_path / "m.safetensors"
    assert invoke("baseline", "tiny-llama", "--kind", "random", "--layers", "0", "--out", path).exit_code == 0
    return path


def test_version_and_env():
    assert __version__ in invoke("--version").output
    out = invoke("env").output
    assert "torch" in out and "transformers" in out and "devices" in out


def test_dry_run_lists_matched_parameters():
    result = invoke("baseline", "tiny-gpt2", "--kind", "random", "--targets", "c_attn", "--layers", "0-1", "--dry-run")
    assert result.exit_code == 0
    assert "transformer.h.0.attn.c_attn.weight\t[128, 384]\t49152" in result.output
    assert "2 tensors, 98,304 weights" in result.output


def test_missing_mask_file(tmp_path):
    assert_clean_error(invoke("inspect", tmp_path / "nope.safetensors"), "does not exist")


def test_non_mask_files(tmp_path):
    (tmp_path / "notes.safetensors").write_text("not a mask")
    assert_clean_error(invoke("inspect", tmp_path / "notes.safetensors"), "not a readable safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "weights.safetensors"))
    assert_clean_error(invoke("inspect", tmp_path / "weights.safetensors"), "is not an mftlab mask")


def test_truncated_and_corrupted_mask(mask_file, tmp_path):
    data = mask_file.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    assert_clean_error(invoke("inspect", tmp_path / "cut.safetensors"), "truncated")
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF  # a data byte: kept count no longer matches
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    assert_clean_error(invoke("inspect", tmp_path / "flip.safetensors"), "corrupted")


def test_wrong_model_refused_then_forced(mask_file, tmp_path):
    other = tmp_path / "other"
    from transformers import AutoModelForCausalLM

    from mftlab.models.presets import build_preset

    model, tok = build_preset("tiny-llama", seed=5)  # same shapes, different weights
    model.save_pretrained(other)
    tok.save_pretrained(other)
    assert_clean_error(invoke("apply", other, mask_file, "--out", tmp_path / "merged"), "--force")
    assert not os.path.exists(tmp_path / "merged")
    assert [p for p in os.listdir(tmp_path) if p.startswith(".merged")] == []
    forced = invoke("apply", other, mask_file, "--out", tmp_path / "merged", "--force")
    assert forced.exit_code == 0 and "applied anyway" in forced.output
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "merged") is not None


def test_shapes_that_do_not_fit(mask_file, tmp_path):
    assert_clean_error(invoke("inspect", mask_file, "--model", "tiny-gpt2"), "is not a parameter of this model")


@pytest.mark.parametrize(
    "args, match",
    [
        (["--mask-ratio", "1.5"], "--mask-ratio 1.5 is outside (0, 1)"),
        (["--mask-ratio", "0"], "--mask-ratio 0.0 is outside (0, 1)"),
        (["--layers", "9-12"], "in layers 9,10,11,12"),
        (["--layers", "3-1"], "range '3-1' is empty"),
        (["--targets", "qkv_proj"], "target 'qkv_proj' matches no linear module"),
    ],
)
def test_bad_baseline_options(tmp_path, args, match):
    out = tmp_path / "m.safetensors"
    assert_clean_error(invoke("baseline", "tiny-llama", "--kind", "random", "--out", out, *args), match)
    assert os.listdir(tmp_path) == []


def test_missing_model_and_usage_errors(tmp_path):
    assert_clean_error(
        invoke("baseline", tmp_path / "no-model", "--kind", "random", "--out", tmp_path / "m.safetensors"),
        "neither a folder nor a preset",
    )
    assert_clean_error(invoke("baseline", "tiny-llama", "--kind", "wrong", "--out", "x.safetensors"), "'wrong'", code=2)
    assert_clean_error(invoke("baseline", "tiny-llama", "--kind", "random"), "--out is required", code=2)


def test_apply_refuses_existing_out(mask_file, tmp_path):
    (tmp_path / "exists").mkdir()
    assert_clean_error(invoke("apply", "tiny-llama", mask_file, "--out", tmp_path / "exists"), "already exists")


def test_convert_cli(tmp_path, tiny_llama):
    dense = {"model.layers.0.mlp.up_proj": torch.ones(352, 128)}
    torch.save(dense, tmp_path / "legacy.pt")
    result = invoke("convert", tmp_path / "legacy.pt", "--model", "tiny-llama", "--out", tmp_path / "m.safetensors")
    assert result.exit_code == 0, result.output
    assert_clean_error(
        invoke("convert", tmp_path / "legacy.pt", "--model", "tiny-gpt2", "--out", tmp_path / "g.safetensors"),
        "neither a module nor a parameter",
    )
    assert not os.path.exists(tmp_path / "g.safetensors")


def test_train_dry_run_lists_targets_without_training(tmp_path):
    result = invoke("train", "tiny-llama", "--layers", "3", "--targets", "q_proj,down_proj", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "model.layers.3.self_attn.q_proj.weight\t[128, 128]\t16384" in result.output
    assert "2 tensors, 61,440 weights" in result.output
    assert_clean_error(invoke("train", "tiny-llama", "--layers", "9", "--dry-run"), "matches nothing")


@pytest.mark.parametrize("ok", [True, False])
def test_commands_close_the_launch_process_group(mask_file, ok):
    """A command closes the process group it ran in, whether it succeeds or fails: a gloo group left to
    interpreter shutdown aborted a torchrun rank (exit -6) after its work was done."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        result = invoke("inspect", mask_file if ok else "missing.safetensors")
        assert (result.exit_code == 0) == ok, result.output
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
