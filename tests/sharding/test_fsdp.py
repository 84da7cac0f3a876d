"""`--sharding fsdp` (FSDP2) on two gloo processes equals one process; kill + resume; fp32 master
weights; gradient checkpointing; distributed evaluation; the bad-input errors (issue 10 A-D)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fsdp_fixtures import BIN, ENV, tiny_llama
from safetensors.torch import load_file

from mftlab.cli.main import main
from mftlab.mask.maskfile import load_mask
from mftlab.training.checkpoint import list_checkpoints

HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = ["--batch-size", "4", "--max-seq-len", "32", "--log-every", "1"]
MASK = ["--score-lr", "0.05", *COMMON]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from mftlab.models.tokenizer import build_char_tokenizer

    root = tmp_path_factory.mktemp("fsdp")
    model = str(root / "llama")
    tiny_llama().save_pretrained(model)
    build_char_tokenizer().save_pretrained(model)
    rng = np.random.default_rng(0)
    data = root / "train.jsonl"
    with open(data, "w") as f:
        for _ in range(16):
            a, b = (int(x) for x in rng.integers(0, 10, size=2))
            f.write(json.dumps({"prompt": f"{a}+{b}=", "completion": str(a + b)}) + "\n")
    return {"model": model, "data": str(data)}


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def torchrun(*args, **kwargs):
    cmd = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "-m", "mftlab.cli.main", *map(str, args)]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, **kwargs)


def train_args(setup, out, *extra):
    return ["train", setup["model"], "--data", setup["data"], "--out", out, *extra]


def losses(out) -> dict[int, float]:
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def evals(out) -> dict[int, float]:
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return {r["step"]: r["eval_loss"] for r in rows if "eval_loss" in r}


def assert_same_losses(a, b, steps):
    la, lb = losses(a), losses(b)
    assert sorted(la) == sorted(lb) == list(range(1, steps + 1))
    worst = max(abs(la[s] - lb[s]) / abs(la[s]) for s in la)
    assert worst < 1e-5, worst
    return worst


def same_mask(a, b) -> bool:
    ma, mb = load_mask(a), load_mask(b)
    return (
        ma.names == mb.names
        and all(np.array_equal(ma.packed[n], mb.packed[n]) for n in ma.names)
        and ma.fingerprints == mb.fingerprints
    )


def test_sharded_selection_equals_selection_on_two_processes():
    """Exact tensor / global / row / threshold masks from row shards, heavy ties included."""
    cmd = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", os.path.join(HERE, "check_sharded_selection.py")]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("masks identical") == 2


def test_mask_two_processes_equal_one_with_distributed_eval(setup, tmp_path):
    """A (mask, tensor granularity) and D (evaluation during training): 20 steps, 2 FSDP processes vs 1."""
    extra = [*MASK, "--max-steps", "20", "--eval-data", setup["data"], "--eval-every", "10"]
    two = torchrun(*train_args(setup, tmp_path / "two", "--sharding", "fsdp", *extra))
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es)" in two.stderr and two.stdout.count("wrote") == 1
    one = invoke(*train_args(setup, tmp_path / "one", *extra))
    assert one.exit_code == 0, one.output
    worst = assert_same_losses(tmp_path / "one", tmp_path / "two", 20)
    print(f"mask tensor: worst per-step relative loss difference {worst:.2e}")
    assert same_mask(tmp_path / "one" / "mask.safetensors", tmp_path / "two" / "mask.safetensors")
    assert same_mask(tmp_path / "one" / "best" / "mask.safetensors", tmp_path / "two" / "best" / "mask.safetensors")
    e1, e2 = evals(tmp_path / "one"), evals(tmp_path / "two")
    assert sorted(e1) == sorted(e2) == [0, 10, 20]  # step 0: the initial mask (issue 13)
    assert all(abs(e1[s] - e2[s]) <= 1e-12 * abs(e1[s]) for s in e1), (e1, e2)


def test_fft_two_processes_equal_one_and_write_an_hf_folder(setup, tmp_path):
    """A (fft, 2 micro-batches per step): same per-step losses over 20 steps, the same weights, an HF folder."""
    from transformers import AutoModelForCausalLM

    extra = ["--method", "fft", "--lr", "1e-3", *COMMON, "--max-steps", "20", "--save-every", "10", "--grad-accum", "2"]
    two = torchrun(*train_args(setup, tmp_path / "two", "--sharding", "fsdp", *extra))
    assert two.returncode == 0, two.stderr[-3000:]
    one = invoke(*train_args(setup, tmp_path / "one", *extra))
    assert one.exit_code == 0, one.output
    worst = assert_same_losses(tmp_path / "one", tmp_path / "two", 20)
    print(f"fft: worst per-step relative loss difference {worst:.2e}")
    a = load_file(tmp_path / "one" / "model" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model" / "model.safetensors")
    assert sorted(a) == sorted(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "two" / "model")
    assert reloaded.dtype == torch.float32
    state = json.loads((tmp_path / "two" / "checkpoints" / "step-000010" / "trainer_state.json").read_text())
    assert state["sharding"] == "fsdp" and state["world_size"] == 2


def _kill_one_rank(cmd, out):
    """Start torchrun; SIGKILL one training process once the first checkpoint is complete."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = None
    try:
        deadline = time.time() + 180
        while not list_checkpoints(str(out)) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        workers = [int(c) for c in children if b"mftlab" in open(f"/proc/{c}/cmdline", "rb").read()]
        if workers and proc.poll() is None:
            victim = workers[-1]
            os.kill(victim, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return victim, proc.returncode


def test_kill_one_process_then_resume_global_with_checkpointing(setup, tmp_path):
    """A (kill -9 of one process, --resume), global granularity, and C under FSDP: the final mask
    equals a straight one-process run without gradient checkpointing."""
    extra = [*MASK, "--granularity", "global", "--max-steps", "16", "--save-every", "4"]
    killed = tmp_path / "killed"
    args = train_args(setup, killed, "--sharding", "fsdp", "--gradient-checkpointing", *extra)
    cmd = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "-m", "mftlab.cli.main", *map(str, args)]
    victim, code = _kill_one_rank(cmd, killed)
    assert victim is not None and code != 0, "the run finished before it could be killed"
    assert not (killed / "mask.safetensors").exists()
    other = invoke(*args, "--resume")  # one process cannot take over two processes' shards
    assert other.exit_code == 1 and "written by 2 processes" in other.output and "Traceback" not in other.output
    unsharded = invoke(*train_args(setup, killed, *extra), "--resume")
    assert unsharded.exit_code == 1 and "option 'sharding'" in unsharded.output
    resumed = torchrun(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = invoke(*train_args(setup, tmp_path / "straight", *extra))
    assert straight.exit_code == 0, straight.output
    assert same_mask(killed / "mask.safetensors", tmp_path / "straight" / "mask.safetensors")
    worst = assert_same_losses(killed, tmp_path / "straight", 16)
    print(f"mask global, killed + resumed, checkpointing: worst per-step relative loss difference {worst:.2e}")


def test_gradient_checkpointing_gives_the_bit_identical_mask(setup, tmp_path):
    """C on one process: fp32 MFT with and without --gradient-checkpointing."""
    extra = [*MASK, "--max-steps", "8"]
    for name, flags in (("plain", []), ("ckpt", ["--gradient-checkpointing"])):
        result = invoke(*train_args(setup, tmp_path / name, *extra, *flags))
        assert result.exit_code == 0, result.output
    assert same_mask(tmp_path / "plain" / "mask.safetensors", tmp_path / "ckpt" / "mask.safetensors")
    assert losses(tmp_path / "plain") == losses(tmp_path / "ckpt")


def _changed_fraction(before: dict, folder) -> float:
    after = load_file(os.path.join(folder, "model.safetensors"))
    names = [n for n in before if ".layers." in n and before[n].dim() == 2]
    assert all(after[n].dtype == torch.bfloat16 for n in names)  # saved in the load dtype
    changed = sum(int((after[n] != before[n]).sum()) for n in names)
    return changed / sum(before[n].numel() for n in names)


def test_bf16_master_weights_keep_small_updates(setup, tmp_path):
    """B: 10 steps at lr 1e-5 from a bf16 model change >= 1/3 of the weights; --pure-bf16 fewer."""
    extra = ["--method", "fft", "--dtype", "bfloat16", "--lr", "1e-5", *COMMON, "--max-steps", "10"]
    before = {n: t.to(torch.bfloat16) for n, t in load_file(os.path.join(setup["model"], "model.safetensors")).items()}
    master = invoke(*train_args(setup, tmp_path / "master", *extra))
    assert master.exit_code == 0, master.output
    pure = invoke(*train_args(setup, tmp_path / "pure", *extra, "--pure-bf16"))
    assert pure.exit_code == 0, pure.output
    assert "--pure-bf16" in pure.output and "--pure-bf16" not in master.output  # the warning line
    with_master = _changed_fraction(before, tmp_path / "master" / "model")
    without = _changed_fraction(before, tmp_path / "pure" / "model")
    print(f"bf16 weights changed: fp32 master {with_master:.1%}, --pure-bf16 {without:.1%}")
    assert with_master >= 1 / 3 and without < with_master


@pytest.mark.slow
def test_bf16_master_weights_under_fsdp(setup, tmp_path):
    """B under FSDP2: fp32 sharded parameters, bf16 compute, bf16 saved model."""
    extra = ["--method", "fft", "--dtype", "bfloat16", "--lr", "1e-5", *COMMON, "--max-steps", "10"]
    before = {n: t.to(torch.bfloat16) for n, t in load_file(os.path.join(setup["model"], "model.safetensors")).items()}
    two = torchrun(*train_args(setup, tmp_path / "two", "--sharding", "fsdp", *extra))
    assert two.returncode == 0, two.stderr[-3000:]
    assert _changed_fraction(before, tmp_path / "two" / "model") >= 1 / 3


def test_eval_under_torchrun_splits_the_examples(setup, tmp_path):
    """D: `mftlab eval` on two processes gives the numbers of one process."""
    args = ["eval", setup["model"], "--data", setup["data"], "--batch-size", "3", "--max-new-tokens", "3", "--json"]
    one = invoke(*args)
    assert one.exit_code == 0, one.output
    two = torchrun(*args)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout)  # only the main process prints
    for key in ("tokens", "examples", "exact_match", "token_accuracy", "answer_accuracy"):
        assert a[key] == b[key], key
    assert abs(a["loss"] - b["loss"]) <= 1e-12 * a["loss"]


def test_bad_inputs_are_one_line_errors(setup, tmp_path):
    def error(result, match):
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and match in result.output, result.output

    out = tmp_path / "run"
    error(invoke(*train_args(setup, out, "--sharding", "fsdp", "--method", "lora")), "--sharding fsdp does not")
    for var in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        error(invoke(*train_args(setup, out, "--max-steps", "1"), env={var: "true"}), "--sharding fsdp")
    jetmoe = tmp_path / "jetmoe"  # a real architecture without gradient checkpointing
    from transformers import JetMoeConfig, JetMoeForCausalLM

    JetMoeForCausalLM(
        JetMoeConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=1,
            num_key_value_heads=2,
            kv_channels=8,
            intermediate_size=32,
            num_local_experts=2,
            num_experts_per_tok=1,
        )
    ).save_pretrained(jetmoe)
    error(
        invoke("train", jetmoe, "--data", setup["data"], "--out", out, "--gradient-checkpointing"),
        "does not support gradient checkpointing",
    )


def test_gathered_hf_folder_in_several_files(tmp_path):
    """The FFT writer's file layout: safetensors shards + index once the model exceeds one file."""
    from transformers import AutoModelForCausalLM

    from mftlab.training.sharding import save_gathered_hf

    model = tiny_llama(tied=True)
    save_gathered_hf(model, None, str(tmp_path), torch.bfloat16, max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    files = set(index["weight_map"].values())
    assert len(files) > 1 and all(os.path.exists(tmp_path / f) for f in files)
    assert "lm_head.weight" not in index["weight_map"]  # tied: written once
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert reloaded.dtype == torch.bfloat16
    for name, p in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], p.to(torch.bfloat16)), name


@pytest.mark.slow
def test_accelerate_launch_with_sharding_fsdp(setup, tmp_path):
    """`accelerate launch` (plain multi-process config) runs --sharding fsdp like torchrun does."""
    extra = [*MASK, "--max-steps", "4"]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "mftlab.cli.main",
        *map(str, train_args(setup, tmp_path / "acc", "--sharding", "fsdp", *extra)),
    ]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stderr
    one = invoke(*train_args(setup, tmp_path / "one", *extra))
    assert one.exit_code == 0, one.output
    assert same_mask(tmp_path / "one" / "mask.safetensors", tmp_path / "acc" / "mask.safetensors")
