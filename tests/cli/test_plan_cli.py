"""`mftlab plan`: the arithmetic is printed, --json is machine-readable, mistakes are one clean line."""

import json

from click.testing import CliRunner

from mftlab.cli.main import main


def invoke(*args):
    return CliRunner().invoke(main, ["plan", *[str(a) for a in args]])


def test_paper_run_shows_the_arithmetic():
    result = invoke(
        "llama2-7b", "--layers", "4-7", "--batch-size", "8", "--seq-len", "2048", "--gpus", "8", "--examples", "7473"
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "6.74e9 params x 2 B (float16) = 12.6 GiB" in out
    assert "targeted weights T = 809,500,672, backward from layer 4" in out
    assert "2 x 8.1e8 x 4 B (param dtype) = 6.03 GiB" in out
    assert "28 layers (layers 4-31)" in out
    assert "batch / (GPUs x grad_accum) = 8 / (8 x 1) = 1 examples" in out
    assert "total per GPU = " in out and ": fits" in out
    assert "/ (8 x 989e12 x 0.4)" in out and "GPU-hours" in out


def test_json_output(tmp_path):
    result = invoke("tiny-gpt2", "--task", "landscape", "--grid", "3x3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["config"]["task"] == "landscape" and data["total_seconds"] > 0
    assert data["memory_per_gpu"] == sum(t["value"] for t in data["memory"] if t["counted"])
    assert {"name", "formula", "value", "unit"} <= set(data["memory"][0])


def test_config_json_path(tiny_gpt2, tmp_path):
    tiny_gpt2.config.save_pretrained(tmp_path)
    result = invoke(tmp_path / "config.json", "--method", "fft", "--gpus", "2", "--sharding", "fsdp")
    assert result.exit_code == 0, result.output
    assert "/ 2 GPUs" in result.output and "gathered layers" in result.output


def assert_clean_error(result, match):
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1, result.output
    assert match in result.output


def test_errors():
    assert_clean_error(invoke("no-such-model"), "'no-such-model'")
    assert_clean_error(invoke("tiny-llama", "--task", "landscape", "--grid", "0x3"), "--grid '0x3'")
    assert_clean_error(invoke("tiny-llama", "--batch-size", "0"), "--batch-size 0")
    assert_clean_error(invoke("tiny-llama", "--layers", "9"), "matches nothing")
    assert invoke("tiny-llama", "--gpu", "v100").exit_code == 2  # a usage error
    assert_clean_error(invoke("tiny-llama", "--method", "lora", "--sharding", "fsdp"), "--sharding fsdp does not")
    assert_clean_error(
        invoke("tiny-llama", "--task", "landscape", "--plane", "line", "--grid", "5x5"), "--plane line is 1-D"
    )
    assert invoke("tiny-llama", "--plane", "sphere").exit_code == 2
    assert invoke("tiny-llama", "--sharding", "zero3").exit_code == 2  # never ran: no longer offered


def test_checkpointing_flag_and_its_old_spelling():
    for flag in ("--gradient-checkpointing", "--checkpointing"):
        result = invoke("tiny-llama", flag, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["config"]["gradient_checkpointing"] is True
    assert "--checkpointing/" not in CliRunner().invoke(main, ["plan", "--help"]).output  # hidden alias


def test_models_plane_and_cpu_device():
    result = invoke(
        "tiny-llama", "--task", "landscape", "--plane", "models", "--grid", "3x3", "--gpu", "cpu", "--dtype", "bfloat16"
    )
    assert result.exit_code == 0, result.output
    assert "landscape --plane models" in result.output and "3 x " in result.output
    assert "CUDA context" in result.output and "none (CPU)" in result.output
