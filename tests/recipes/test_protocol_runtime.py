"""The protocol's `runtime` section: parsed and checked, the training steps' command lines, the plan
before the run (dry run with no weights, refusal of steps that do not fit), a failed launched step as
one `Error:` line, and a killed step resumed from its checkpoint."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from click.core import ParameterSource

from mftlab.errors import ConfigError
from mftlab.recipes.protocol_config import config_from_dict, config_to_dict, load_protocol_config
from mftlab.recipes.protocol_runs import domain_runs
from mftlab.recipes.runtime import Runtime
from mftlab.recipes.step_runner import StepRunner, runtime_train_config
from mftlab.recipes.tinybench import SplitSizes, write_benchmark
from mftlab.recipes.train_command import train_arguments
from mftlab.training.config import TrainConfig, merge_config

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def _data(tmp_path, sizes=SplitSizes(32, 16, 16)):
    paths = write_benchmark(str(tmp_path / "data"), 0, sizes)["math"]
    return {k: os.path.relpath(v, tmp_path) for k, v in paths.items()}


def _config(tmp_path, backbone="micro-llama", **extra) -> dict:
    return {
        "backbone": backbone,
        "domains": {"math": _data(tmp_path)},
        "layers": "1",
        "methods": ["fft", "continued_fft", "mft", "random", "wanda", "snip"],
        "mft_inits": ["magnitude"],
        "mft_score_lrs": [1e-2],
        "random_seeds": 1,
        "training": {"fft_epochs": 1, "mft_epochs": 1, "batch_size": 8, "eval_every": 2, "max_seq_len": 64},
        **extra,
    }


def _write(tmp_path, values, name="protocol.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def _mftlab(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mftlab.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=600,
    )


# -- the section ------------------------------------------------------------------------------------------
def test_without_a_runtime_section_every_step_runs_here_as_before(tmp_path):
    config = config_from_dict(_config(tmp_path), str(tmp_path))
    assert config.runtime == Runtime() and not config.runtime.launched
    for run in domain_runs(config, str(tmp_path / "out"), 0, "math", "micro-llama", lora=False):
        assert runtime_train_config(run.config, config.runtime) == run.config  # nothing changed


def test_a_runtime_section_round_trips_and_reaches_the_training_steps(tmp_path):
    runtime = {
        "processes": 8,
        "launcher_args": ["--nnodes", "1"],
        "device": "cuda",
        "dtype": "bfloat16",
        "fft_sharding": "fsdp",
        "grad_accum": 2,
        "gradient_checkpointing": True,
        "eval_batch_size": 4,
        "gpu_memory_gib": 80,
        "checkpoint_every": 50,
    }
    config = config_from_dict(_config(tmp_path, runtime=runtime), str(tmp_path))
    path = _write(tmp_path, config_to_dict(config, relative_to=str(tmp_path)), "again.yaml")
    assert load_protocol_config(str(path)) == config
    runs = {
        r.key: runtime_train_config(r.config, config.runtime)
        for r in domain_runs(config, "o", 0, "math", "m", lora=False)
    }
    fft, mft = runs["fft"], runs["magnitude-lr0.01"]
    assert (fft.sharding, mft.sharding) == ("fsdp", "none")  # MFT stays data-parallel
    assert fft.dtype == mft.dtype == "bfloat16" and fft.device == "cuda" and fft.grad_accum == 2
    assert fft.gradient_checkpointing and fft.eval_batch_size == 4 and fft.save_every == 50
    assert mft.save_every == runs["magnitude-lr0.01"].save_every != 50  # MFT keeps its own checkpoints


@pytest.mark.parametrize(
    "runtime, message",
    [
        ({"processes": 0}, r"runtime.processes=0 must be a whole number of at least 1"),
        ({"launcher": "none", "processes": 2}, "runtime.launcher=none runs every step in this process"),
        ({"launcher": "slurm"}, "runtime.launcher='slurm' is unknown; choose one of torchrun, none"),
        ({"device": "cuda:1"}, "runtime.device='cuda:1' is not one of auto, cpu, cuda"),
        ({"device": "gpu"}, "runtime.device='gpu' is not one of auto, cpu, cuda"),
        ({"fft_sharding": "ddp"}, "runtime.fft_sharding='ddp' is unknown"),
        ({"dtype": "fp8"}, "runtime.dtype='fp8' is unknown"),
        ({"grad_accum": 0}, "runtime.grad_accum=0 must be a whole number of at least 1"),
        ({"gpu_memory_gib": -1}, "runtime.gpu_memory_gib=-1 must be a positive number"),
        ({"gpus": 8}, "unknown key 'runtime.gpus' in the protocol config; known keys: processes"),
    ],
)
def test_bad_runtime_values_are_named_with_the_fix(tmp_path, runtime, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(_config(tmp_path, runtime=runtime), str(tmp_path))


# -- the command lines ------------------------------------------------------------------------------------
def _parsed(args: list[str]) -> TrainConfig:
    """`mftlab train ARGS` parsed the way the command parses it."""
    from mftlab.cli.cmd_train import command

    ctx = command.make_context("train", list(args))
    params = dict(ctx.params)
    model = params.pop("model")
    params.pop("config_file"), params.pop("dry_run")
    given = {n for n in params if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE} | {"model"}
    return merge_config({}, dict(params, model=model), given)


def test_every_training_step_s_command_line_gives_back_its_config(tmp_path):
    runtime = {"processes": 2, "dtype": "bfloat16", "fft_sharding": "fsdp", "gradient_checkpointing": True}
    values = _config(tmp_path, runtime=runtime, methods=["fft", "continued_fft", "mft", "lora"])
    values["training"]["warmup_ratio"] = 0.1
    values["mft_score_lrs"] = [1e-3, 0.0123456789]
    config = config_from_dict(values, str(tmp_path))
    runs = domain_runs(config, str(tmp_path / "o"), 3, "math", "micro-llama", lora=True)
    assert [r.key for r in runs] == ["fft", "continued_fft", "magnitude-lr0.001", "magnitude-lr0.0123457", "lora"]
    for run in runs:
        train = runtime_train_config(run.config, config.runtime)
        assert _parsed(train_arguments(train)) == train, run.label


# -- the plan -------------------------------------------------------------------------------------------
def _seven_b(tmp_path):
    """A Llama-2-7B folder that holds its config.json and nothing else: the plan must not need weights."""
    from transformers import LlamaConfig

    from mftlab.models.shapes import BUILTIN_SHAPES

    folder = tmp_path / "llama-2-7b"
    LlamaConfig(**BUILTIN_SHAPES["llama2-7b"]).save_pretrained(folder)
    assert os.listdir(folder) == ["config.json"]
    return folder


def test_dry_run_plans_a_7b_protocol_on_8_gpus_from_its_config_alone(tmp_path):
    folder = _seven_b(tmp_path)
    runtime = {
        "processes": 8,
        "device": "cuda",
        "dtype": "bfloat16",
        "fft_sharding": "fsdp",
        "grad_accum": 8,
        "gradient_checkpointing": True,
        "eval_batch_size": 16,
        "gpu_memory_gib": 80,
        "gpu": "a100",
    }
    values = _config(tmp_path, backbone="./llama-2-7b", runtime=runtime, methods=["fft", "continued_fft", "mft"])
    values["layers"] = "4-7"
    values["training"].update(batch_size=64, max_seq_len=2048)
    path = _write(tmp_path, values)
    result = _mftlab("protocol", path, "--out", tmp_path / "out", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "A100 SXM 80GB, limit 80.0 GiB per GPU" in lines[0]
    steps = [line for line in lines if line[:4].strip().rstrip(".").isdigit()]
    assert [s.split(": ", 1)[0].split(". ", 1)[1] for s in steps[:3]] == ["math (seed 0)"] * 3
    assert "DOES NOT FIT" not in result.stdout
    commands = [line.strip() for line in lines if "--nproc_per_node 8" in line]
    assert any("train ./llama-2-7b" in c or "llama-2-7b --data" in c for c in commands)
    assert any("--sharding fsdp" in c and "--gradient-checkpointing" in c and "--grad-accum 8" in c for c in commands)
    assert any("protocol-step" in c for c in commands)  # scoring and the landscape are launched too
    plan = (tmp_path / "out" / "plan.md").read_text()
    assert "| 1 | math (seed 0): full fine-tuning | 8 |" in plan
    assert sorted(os.listdir(tmp_path / "out")) == ["plan.json", "plan.md"]  # no step ran, no weights loaded
    assert os.listdir(folder) == ["config.json"]
    again = _mftlab("protocol", path, "--out", tmp_path / "out", "--dry-run", "--processes", "4")
    assert "--nproc_per_node 4" in again.stdout and "--nproc_per_node 8" not in again.stdout


def test_a_config_whose_steps_do_not_fit_is_refused_before_any_step_runs(tmp_path):
    folder = _seven_b(tmp_path)
    runtime = {"processes": 2, "device": "cuda", "dtype": "bfloat16", "gpu_memory_gib": 40}
    values = _config(tmp_path, backbone="./llama-2-7b", runtime=runtime, methods=["fft", "continued_fft", "mft"])
    values["training"].update(batch_size=8, max_seq_len=2048)
    path = _write(tmp_path, values)
    result = _mftlab("protocol", path, "--out", tmp_path / "out")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    refused = [line for line in lines if line.startswith("does not fit: ")]
    assert refused[0].startswith("does not fit: math (seed 0): full fine-tuning needs ")
    assert "per GPU of 40 GiB; try runtime.fft_sharding: fsdp" in refused[0]
    assert len(refused) == len(lines) - 1 and lines[-1].startswith("Error: ") and "--force" in lines[-1]
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "seed-0").exists()
    assert os.listdir(folder) == ["config.json"]


# -- running ----------------------------------------------------------------------------------------------
def test_a_failed_launched_step_stops_the_protocol_with_one_line_naming_it_and_its_log(tmp_path):
    values = _config(tmp_path, runtime={"processes": 2, "device": "cpu"}, methods=["fft", "mft"])
    with open(tmp_path / values["domains"]["math"]["train"], "a") as f:
        f.write('{"question": "a record the trainer cannot read"}\n')
    result = _mftlab("protocol", _write(tmp_path, values), "--out", tmp_path / "out")
    assert result.returncode == 1, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    log = tmp_path / "out" / "seed-0" / "math" / "fft" / "log.txt"
    assert errors == [result.stderr.strip().splitlines()[-1]] and len(errors) == 1
    assert f"step 'math (seed 0): full fine-tuning' failed (exit 1); its log is {log}" in errors[0]
    assert "Traceback" not in result.stderr and log.exists()
    command = (log.parent / "command.sh").read_text()
    assert "--nproc_per_node 2 --standalone -m mftlab.cli.main train micro-llama" in command
    assert not (log.parent / "result.json").exists()


def test_a_step_killed_after_a_checkpoint_resumes_from_it(tmp_path):
    from mftlab.mask.maskfile import load_mask
    from mftlab.training.loop import train

    data = _data(tmp_path)
    common = dict(
        model="micro-llama",
        data=str(tmp_path / data["train"]),
        method="mask",
        layers="1",
        max_seq_len=64,
        batch_size=8,
        save_every=1,
        keep_checkpoints=10,
    )
    straight = StepRunner(str(tmp_path), Runtime()).train(
        "straight", str(tmp_path / "a"), TrainConfig(out=str(tmp_path / "a"), max_steps=4, **common)
    )
    train(TrainConfig(out=str(tmp_path / "b"), max_steps=2, **common))  # "killed" after step 1's checkpoint
    kept = tmp_path / "b" / "checkpoints" / "step-000001" / "trainer_state.json"
    before = kept.stat().st_mtime_ns
    resumed = StepRunner(str(tmp_path), Runtime()).train(
        "resumed", str(tmp_path / "b"), TrainConfig(out=str(tmp_path / "b"), max_steps=4, **common)
    )
    assert kept.stat().st_mtime_ns == before  # resumed from it, not started over in a cleared folder
    assert resumed["steps"] == straight["steps"] == 4
    a, b = load_mask(resumed["output"]), load_mask(straight["output"])
    assert a.names == b.names and all(torch.equal(a.keep(n), b.keep(n)) for n in a.names)
    records = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == ["straight", "resumed"] and records[0]["processes"] == 1


def test_the_readme_s_7b_config_is_shown_as_shipped_and_every_step_fits_8_a100s(tmp_path):
    from pathlib import Path

    from mftlab.recipes.protocol_plan import plan_protocol

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "protocol-llama2-7b.yaml").read_text()
    assert text in (root / "README.md").read_text()
    values = yaml.safe_load(text)
    for path in values["domains"]["math"].values():  # placeholders: the plan reads record counts only
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text('{"prompt": "q", "completion": "a"}\n' * 100)
    config = config_from_dict(values, str(tmp_path))
    plan = plan_protocol(config, str(tmp_path / "out"), lora=False)
    assert config.runtime.processes == 8 and plan.card == "a100" and plan.misfits() == []
    trainings = [s for s in plan.steps if s.kind == "train"]
    assert len(trainings) == 2 + 4 and all(s.processes == 8 and "--nproc_per_node 8" in s.command for s in trainings)
