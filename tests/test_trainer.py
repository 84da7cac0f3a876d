"""The training loop on tiny models: loss goes down, base untouched, outputs, resume, errors."""

import json
import os

import numpy as np
import pytest
import torch

from mftlab.errors import ConfigError, DataError, TrainingError
from mftlab.mask.maskfile import load_mask
from mftlab.mft.masked_layer import MaskedLinear
from mftlab.mft.selection import num_masked
from mftlab.models.loading import load_model
from mftlab.training.checkpoint import list_checkpoints
from mftlab.training.config import TrainConfig
from mftlab.training.loop import step_indices, train


def write_data(path, n=16, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(n):
            a, b = (int(x) for x in rng.integers(0, 10, size=2))
            f.write(json.dumps({"prompt": f"{a}+{b}=", "completion": str(a + b)}) + "\n")
    return str(path)


@pytest.fixture
def data(tmp_path):
    return write_data(tmp_path / "train.jsonl")


def _config(model_dir, data, out, **kw):
    base = dict(
        model=model_dir,
        data=data,
        out=str(out),
        max_steps=12,
        batch_size=4,
        score_lr=0.05,
        warmup_ratio=0.0,
        log_every=4,
        max_seq_len=32,
    )
    base.update(kw)
    return TrainConfig(**base)


def _metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_mask_training_lowers_loss_and_leaves_base_bit_identical(model_dir, data, tmp_path):
    """Both Llama (Linear) and GPT-2 (Conv1D) train; the base weights never change."""
    loaded = load_model(model_dir)
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    out = tmp_path / "run"
    result = train(_config(model_dir, data, out), loaded=loaded)
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert all(r["mask_ratio"] == pytest.approx(0.1, abs=1e-3) for r in rows)
    assert rows[-1]["flips_since_start"] >= rows[-1]["flips"] > 0
    assert not any(isinstance(m, MaskedLinear) for m in loaded.model.modules())
    assert all(torch.equal(p, before[n]) for n, p in loaded.model.named_parameters())
    mask = load_mask(result.output_path)
    mask.check_fits(dict(loaded.model.named_parameters(remove_duplicate=False)))  # fingerprints match
    for name in mask.names:
        assert mask.numel(name) - mask.kept(name) == num_masked(mask.numel(name), 0.1)
    assert mask.method["name"] == "mft" and mask.method["config"]["mask_ratio"] == 0.1
    with open(out / "config.json") as f:
        assert json.load(f)["score_lr"] == 0.05


def test_same_seed_same_mask_and_resume_is_bit_identical(llama_dir, data, tmp_path):
    model_dir = llama_dir
    full = train(_config(model_dir, data, tmp_path / "a", max_steps=8, log_every=2))
    again = train(_config(model_dir, data, tmp_path / "b", max_steps=8, log_every=2))

    class Stop(Exception):
        pass

    def stop_at_6(event):
        if event.event == "step" and event.step == 6:
            raise Stop

    cfg = _config(model_dir, data, tmp_path / "c", max_steps=8, log_every=2, save_every=4)
    with pytest.raises(Stop):
        train(cfg, progress=stop_at_6)
    assert [s for s, _ in list_checkpoints(cfg.out)] == [4]
    assert os.path.exists(os.path.join(cfg.out, "checkpoints", "step-000004", "mask.safetensors"))
    resumed = train(_config(model_dir, data, tmp_path / "c", max_steps=8, log_every=2, save_every=4, resume=True))
    a, b, c = (load_mask(r.output_path) for r in (full, again, resumed))
    for name in a.names:
        assert np.array_equal(a.packed[name], b.packed[name])
        assert np.array_equal(a.packed[name], c.packed[name])
    assert [r["step"] for r in _metrics(cfg.out)] == [2, 4, 6, 8]
    assert _metrics(cfg.out)[-1]["loss"] == _metrics(tmp_path / "a")[-1]["loss"]


def test_fft_saves_model_folder_and_best_checkpoint(llama_dir, data, tmp_path):
    model_dir = llama_dir
    out = tmp_path / "fft"
    result = train(_config(model_dir, data, out, method="fft", lr=3e-3, eval_data=data, eval_every=4))
    rows = _metrics(out)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert [r["step"] for r in rows if "eval_loss" in r] == [4, 8, 12]
    assert result.best_step in (4, 8, 12) and os.path.isfile(out / "best" / "config.json")
    trained = load_model(result.output_path)
    original = load_model(model_dir)
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(dict(trained.model.named_parameters())[name], dict(original.model.named_parameters())[name])


@pytest.mark.parametrize("granularity,selection", [("row", "topk"), ("global", "topk"), ("tensor", "threshold")])
def test_other_selections_train(llama_dir, data, tmp_path, granularity, selection):
    result = train(
        _config(
            llama_dir,
            data,
            tmp_path / "r",
            max_steps=3,
            granularity=granularity,
            selection=selection,
            threshold=0.0,
            rank_by="abs",
            score_dtype="bf16",
            targets="q_proj,v_proj",
            layers="1",
        )
    )
    mask = load_mask(result.output_path)
    assert mask.names == ["model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"]
    if selection == "topk":
        assert mask.total - mask.total_kept == num_masked(mask.total, 0.1) or granularity == "row"


def test_nan_loss_stops_with_clear_message(llama_dir, data, tmp_path):
    model_dir = llama_dir
    loaded = load_model(model_dir)
    with torch.no_grad():
        loaded.model.model.norm.weight.fill_(float("nan"))
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match="loss became nan at step 1.*no checkpoint"):
        train(_config(model_dir, data, out), loaded=loaded)
    assert not os.path.exists(out / "mask.safetensors")


def test_user_errors_are_clean(llama_dir, data, tmp_path):
    model_dir = llama_dir
    out = tmp_path / "e"
    with pytest.raises(ConfigError, match="--batch-size 5 is not a multiple"):
        train(_config(model_dir, data, out, batch_size=5, grad_accum=2))
    with pytest.raises(ConfigError, match="holds no run"):
        train(_config(model_dir, data, out, resume=True))
    with pytest.raises(ConfigError, match="--eval-every 5 needs --eval-data"):
        _config(model_dir, data, out, eval_every=5)
    with pytest.raises(ConfigError, match="score_lr=-1"):
        _config(model_dir, data, out, score_lr=-1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1=", "completion": "2"}\n{"prompt": 3}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        train(_config(model_dir, str(bad), out))
    train(_config(model_dir, data, out, max_steps=2))
    with pytest.raises(ConfigError, match="already holds a run"):
        train(_config(model_dir, data, out, max_steps=2))
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        train(_config(model_dir, data, out, max_steps=2, resume=True))
    with pytest.raises(ConfigError, match="option 'mask_ratio' is 0.2"):
        train(_config(model_dir, data, out, max_steps=2, resume=True, mask_ratio=0.2))
    train(_config(model_dir, data, out, max_steps=2, force=True))  # --force starts over


def test_lora_without_peft_is_a_clean_error(llama_dir, data, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    with pytest.raises(ConfigError, match="needs the peft library"):
        train(_config(llama_dir, data, tmp_path / "l", method="lora"))


def test_lora_trains(llama_dir, data, tmp_path):
    pytest.importorskip("peft")
    out = tmp_path / "l"
    result = train(_config(llama_dir, data, out, method="lora", lr=1e-2, targets="q_proj,v_proj"))
    assert os.path.isfile(os.path.join(result.output_path, "adapter_config.json"))
    rows = _metrics(out)
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_step_indices_are_seeded_epochs():
    first_epoch = [i for s in range(3) for i in step_indices(10, 4, seed=1, step=s)]
    assert sorted(first_epoch[:10]) == list(range(10))  # 3 steps of 4 cover the epoch, topped up
    assert first_epoch[10:] == first_epoch[:2]
    assert step_indices(10, 4, 1, 5) == step_indices(10, 4, 1, 5)
    assert step_indices(10, 4, 1, 3) != step_indices(10, 4, 2, 3)
