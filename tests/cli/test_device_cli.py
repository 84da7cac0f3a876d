"""`--device` on every command that computes with a model, and peak memory in the JSON outputs."""

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.models.tokenizer import build_char_tokenizer

BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
COMMANDS = ("eval", "baseline", "sweep", "stats", "compare-masks", "apply", "landscape", "train")
PEAK_KEYS = ("peak_mem_gib", "peak_mem_gib_by_rank")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny Llama folder (hidden 32, 2 layers), prompt/completion data and a random mask of it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("device")
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=72,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(root / "llama")
    build_char_tokenizer().save_pretrained(root / "llama")
    (root / "data.jsonl").write_text(
        "".join(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n" for i in range(10))
    )
    mask = root / "mask.safetensors"
    made = invoke("baseline", root / "llama", "--kind", "random", "--seeds", "1", "--layers", "0", "--out", mask)
    assert made.exit_code == 0, made.output
    return {"model": str(root / "llama"), "data": str(root / "data.jsonl"), "mask": str(mask)}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _args(command: str, setup: dict, out) -> list:
    """The smallest working call of `command` (--out under `out`)."""
    model, data, mask = setup["model"], setup["data"], setup["mask"]
    return {
        "eval": ["eval", model, "--data", data, "--no-generate"],
        "baseline": ["baseline", model, "--kind", "magnitude", "--out", out / "m.safetensors"],
        "sweep": ["sweep", "ratio", model, "--data", data, "--eval-data", data, "--out", out / "sweep"],
        "stats": ["stats", mask, "--model", model, "--out", out / "stats"],
        "compare-masks": ["compare-masks", mask, mask, "--out", out / "overlap"],
        "apply": ["apply", model, mask, "--out", out / "merged"],
        "landscape": ["landscape", "--model", model, "--data", data, "--eval-data", data, "--out", out / "ls"],
        "train": ["train", model, "--data", data, "--out", out / "run", "--max-steps", "1"],
    }[command]


def _one_error_line(result, match: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_computes_with_a_model_offers_device(command):
    text = invoke(command, "--help").output
    assert "--device" in text and "auto, cpu, cuda or cuda:N" in text, text


@no_cuda
@pytest.mark.parametrize("command", COMMANDS)
def test_cuda_without_cuda_is_one_error_line(setup, tmp_path, command):
    result = invoke(*_args(command, setup, tmp_path), "--device", "cuda")
    _one_error_line(result, "--device cuda needs a CUDA GPU, and torch sees none here")
    assert "use --device cpu" in result.output
    assert os.listdir(tmp_path) == []  # refused before anything was written


@pytest.mark.parametrize("command", COMMANDS)
def test_a_device_that_is_no_device_is_one_error_line(setup, tmp_path, command):
    result = invoke(*_args(command, setup, tmp_path), "--device", "gpu")
    _one_error_line(result, "--device 'gpu' is not a device; use auto, cpu, cuda or cuda:N")


def _without_peaks(values: dict) -> dict:
    return {k: v for k, v in values.items() if not k.startswith("peak_")}


def _check_peaks(values: dict, processes: int) -> None:
    assert len(values["peak_mem_gib_by_rank"]) == processes
    assert values["peak_mem_gib"] == max(values["peak_mem_gib_by_rank"]) > 0
    assert ("peak_reserved_gib" in values) == torch.cuda.is_available()


def test_eval_on_the_cpu_gives_the_numbers_of_the_default_and_its_peak_memory(setup):
    args = ["eval", setup["model"], "--data", setup["data"], "--json", "--max-new-tokens", "3"]
    default, cpu = invoke(*args), invoke(*args, "--device", "cpu")
    assert default.exit_code == 0 and cpu.exit_code == 0, default.output + cpu.output
    a, b = json.loads(default.stdout), json.loads(cpu.stdout)
    assert list(a)[:11] == [
        "loss",
        "perplexity",
        "token_accuracy",
        "tokens",
        "examples",
        "exact_match",
        "answer_accuracy",
        "model",
        "mask",
        "data",
        "peak_mem_gib",
    ]  # the keys users read, unchanged, then the new ones
    if not torch.cuda.is_available():  # auto is the CPU here
        assert _without_peaks(a) == _without_peaks(b)
    _check_peaks(b, 1)
    plain = invoke(*args[:-3], "--no-generate")
    assert "peak" not in plain.output and plain.output.startswith("loss ")  # the text output is as it was


def test_eval_under_torchrun_reports_every_process(setup, tmp_path):
    args = ["eval", setup["model"], "--data", setup["data"], "--batch-size", "3", "--json", "--device", "cpu"]
    one = invoke(*args, "--per-example", tmp_path / "one.jsonl")
    assert one.exit_code == 0, one.output
    two_args = [*args, "--per-example", tmp_path / "two.jsonl"]
    cmd = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "-m", "mftlab.cli.main", *map(str, two_args)]
    two = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout)  # only the main process prints
    for key in ("tokens", "examples", "exact_match", "token_accuracy", "answer_accuracy"):
        assert a[key] == b[key], key
    assert abs(a["loss"] - b["loss"]) <= 1e-12 * a["loss"]
    _check_peaks(b, 2)
    # every example's row, generated and scored by one of the two processes, as one process has it
    rows = [[json.loads(line) for line in (tmp_path / f"{n}.jsonl").read_text().splitlines()] for n in ("one", "two")]
    assert len(rows[0]) == len(rows[1]) == a["examples"]
    for x, y in zip(*rows):
        for key in ("loss_sum", "loss"):  # the same batches, summed in the same order: equal to rounding
            assert abs(x.pop(key) - y.pop(key)) <= 1e-6 * x["tokens"] * 10, key
        assert x == y


def test_baseline_json_reports_what_was_written_and_peak_memory(setup, tmp_path):
    out = tmp_path / "wanda.safetensors"
    args = ["baseline", setup["model"], "--kind", "wanda", "--data", setup["data"], "--layers", "0", "--out", out]
    result = invoke(*args, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)
    assert values["kind"] == "wanda" and values["granularity"] == "row" and values["device"] == "cpu"
    [written] = values["masks"]
    assert written["path"] == str(out) and os.path.exists(out) and written["masked"] > 0
    assert values["calibration"]["examples"] == 10
    _check_peaks(values, 1)
    text = invoke(*args[:-1], tmp_path / "again.safetensors")  # without --json: the lines as before
    assert text.stdout.startswith("calibrated on ") and "peak" not in text.stdout


def test_landscape_json_records_peak_memory(setup, tmp_path):
    out = tmp_path / "ls"
    args = _args("landscape", setup, tmp_path)
    result = invoke(*args, "--grid", "2x2", "--max-tokens", "32", "--no-figures", "--device", "cpu")
    assert result.exit_code == 0, result.output
    from mftlab.files.results import read_arrays, read_result

    values = read_result(out, "landscape")
    _check_peaks(values, 1)
    assert {"markers", "summary", "layout", "world_size", "seconds_per_point"} <= set(values)
    assert read_arrays(out, "landscape")["train_loss"].shape == (2, 2)
