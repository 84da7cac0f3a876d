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

from mftlab.cli.main import main
from mftlab.mask.maskfile import Mask, save_mask
from mftlab.models.presets import _llama_config
from mftlab.models.tokenizer import build_char_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _save_model(folder, seed, hidden=32):
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(_llama_config(hidden=hidden, layers=2, heads=2, kv_heads=1))
    model.save_pretrained(folder)
    build_char_tokenizer().save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("landscape_cli")
    models = {name: _save_model(root / name, seed) for name, seed in (("fft", 0), ("cont", 1))}
    _save_model(root / "wide", 2, hidden=64)
    name = "model.layers.1.mlp.up_proj.weight"
    weight = dict(models["fft"].named_parameters())[name].detach()
    keep = torch.rand(weight.shape, generator=torch.Generator().manual_seed(0)) > 0.1
    save_mask(Mask.from_keep({name: keep}, {name: weight}, "fft"), root / "mask.safetensors")
    for split, n in (("train", 24), ("test", 12)):
        (root / f"{split}.jsonl").write_text(
            "".join(json.dumps({"prompt": f"{i}*{n}=", "completion": str(i * n)}) + "\n" for i in range(n))
        )
    return root


def _args(root, out, *extra):
    return [
        "landscape",
        "--model",
        str(root / "fft"),
        "--data",
        str(root / "train.jsonl"),
        "--eval-data",
        str(root / "test.jsonl"),
        "--out",
        str(out),
        *extra,
    ]


def test_random_plane_run_writes_results_and_figures(setup, tmp_path):
    result = CliRunner().invoke(
        main,
        _args(
            setup,
            tmp_path / "r",
            "--grid",
            "3x2",
            "--model",
            str(setup / "cont"),
            "--labels",
            "FFT,other",
            "--cache-directions",
        ),
    )
    assert result.exit_code == 0, result.output
    assert "estimate:" in result.output and "off-plane" in result.output
    for name in ("landscape.npz", "landscape.json", "landscape.png", "landscape.pdf", "landscape.html"):
        assert (tmp_path / "r" / name).exists(), name
    doc = json.loads((tmp_path / "r" / "landscape.json").read_text())
    assert doc["markers"][1]["off_plane_relative"] > 0.5 and doc["config"]["grid"] == [3, 2]


def test_three_model_plane_with_a_masked_model(setup, tmp_path):
    result = CliRunner().invoke(
        main,
        _args(
            setup,
            tmp_path / "m",
            "--plane",
            "models",
            "--grid",
            "3x3",
            "--model",
            str(setup / "cont"),
            "--model",
            f"{setup / 'fft'}::{setup / 'mask.safetensors'}",
            "--labels",
            "FFT,continued FFT,MFT",
            "--no-figures",
        ),
    )
    assert result.exit_code == 0, result.output
    assert "MFT: (" in result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--grid", "21x"], "--grid '21x'"),
        (["--range", "1:-1"], "--range '1:-1'"),
        (["--plane", "models", "--model", "WIDE", "--model", "WIDE"], "different architecture"),
        (["--labels", "a,b"], "--labels has 2 labels"),
    ],
)
def test_user_errors_exit_1_without_traceback(setup, tmp_path, extra, message):
    extra = [str(setup / "wide") if e == "WIDE" else e for e in extra]
    result = CliRunner().invoke(main, _args(setup, tmp_path / "e", *extra))
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "e" / "landscape.json").exists()


def test_mask_for_another_model_is_refused(setup, tmp_path):
    args = _args(setup, tmp_path / "e", "--mask-directions", str(setup / "mask.safetensors"))
    args[args.index("--model") + 1] = str(setup / "wide")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "shape" in result.output and "Traceback" not in result.output


def test_missing_eval_data_file(setup, tmp_path):
    args = _args(setup, tmp_path / "e", "--grid", "2x2")
    args[args.index("--eval-data") + 1] = str(setup / "nope.jsonl")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "nope.jsonl" in result.output and "does not exist" in result.output


def _one_thread_invoke(args):
    """In-process run with the subprocesses' thread count, so float sums are ordered the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return CliRunner().invoke(main, args)
    finally:
        torch.set_num_threads(threads)


def _cli(*args):
    return [os.path.join(BIN, "python"), "-m", "mftlab.cli.main", *map(str, args)]


def test_resume_after_kill_gives_the_identical_grid(setup, tmp_path):
    common = ["--grid", "5x4", "--no-figures"]
    full = _one_thread_invoke(_args(setup, tmp_path / "full", *common))
    assert full.exit_code == 0, full.output
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(*_args(setup, out, *common)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    shard = out / "landscape.points-0.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if shard.exists() and shard.read_text().count("\n") >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    done = shard.read_text().count("\n")
    assert 3 <= done < 20 and not (out / "landscape.json").exists()
    resumed = subprocess.run(_cli(*_args(setup, out, *common, "--resume")), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({done} already done)" in resumed.stdout
    with np.load(tmp_path / "full" / "landscape.npz") as a, np.load(out / "landscape.npz") as b:
        for key in ("train_loss", "test_loss", "perturbation_norm", "xs", "ys"):
            np.testing.assert_array_equal(a[key], b[key])


def test_two_processes_give_the_single_process_grid(setup, tmp_path):
    common = ["--grid", "3x3", "--no-figures", "--model", str(setup / "cont")]
    single = _one_thread_invoke(_args(setup, tmp_path / "one", *common))
    assert single.exit_code == 0, single.output
    torchrun = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", "-m", "mftlab.cli.main"]
    multi = subprocess.run(
        torchrun + list(map(str, _args(setup, tmp_path / "two", *common))), env=ENV, capture_output=True, text=True
    )
    assert multi.returncode == 0, multi.stderr[-2000:]
    assert (tmp_path / "two" / "landscape.points-1.jsonl").exists()
    with np.load(tmp_path / "one" / "landscape.npz") as a, np.load(tmp_path / "two" / "landscape.npz") as b:
        for key in ("train_loss", "test_loss", "marker_xy", "marker_train_loss"):
            np.testing.assert_array_equal(a[key], b[key])


def _records(folder, rank):
    return [json.loads(line) for line in (folder / f"landscape.points-{rank}.jsonl").read_text().splitlines()]


def _write_records(folder, rank, records, tail=""):
    (folder / f"landscape.points-{rank}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_two_process_resume_deals_the_remaining_points_evenly(setup, tmp_path):
    """A partial 2-process run where rank 0 finished and rank 1 barely started: the resume splits what is left."""
    common = ["--grid", "4x4", "--no-figures"]  # 16 grid points + the centre marker = points 0..16
    full = _one_thread_invoke(_args(setup, tmp_path / "full", *common))
    assert full.exit_code == 0, full.output
    records = _records(tmp_path / "full", 0)
    assert [r["rank"] for r in records] == [0] * 17 and all(r["seconds"] > 0 for r in records)

    # What a kill of a 2-process run by a version without `rank` leaves when rank 1 stalled after
    # its first point: rank 0's shard holds its 9 points (k % 2 == 0), rank 1's one and a torn line.
    out = tmp_path / "partial"
    out.mkdir()
    (out / "landscape.run.json").write_text((tmp_path / "full" / "landscape.run.json").read_text())
    old = [{k: v for k, v in r.items() if k != "rank"} for r in records]
    _write_records(out, 0, old[0::2])
    _write_records(out, 1, old[1:2], tail='{"i": 3, "x": ')
    left = [r["i"] for r in old[3::2]]  # 7 points, which k % 2 would all give to rank 1

    torchrun = [os.path.join(BIN, "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "mftlab.cli.main"]
    resumed = subprocess.run(torchrun + _args(setup, out, *common, "--resume"), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "(10 already done)" in resumed.stdout
    new = {rank: [r for r in _records(out, rank) if "rank" in r] for rank in (0, 1)}
    assert all(r["rank"] == rank and r["seconds"] > 0 for rank in (0, 1) for r in new[rank])
    assert sorted(r["i"] for rank in (0, 1) for r in new[rank]) == left
    assert abs(len(new[0]) - len(new[1])) <= 1, {rank: [r["i"] for r in new[rank]] for rank in (0, 1)}
    assert [r for r in _records(out, 0) if "rank" not in r] == old[0::2]  # older records kept as they were
    keys = ("xs", "ys", "train_loss", "test_loss", "perturbation_norm", "marker_train_loss", "marker_test_loss")
    with np.load(tmp_path / "full" / "landscape.npz") as a, np.load(out / "landscape.npz") as b:
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
