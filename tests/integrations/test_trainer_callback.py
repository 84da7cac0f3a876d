"""MaskCallback under transformers.Trainer: exact masks at checkpoints and at the end, the same first
gradients as `mftlab train`, two DDP processes agree, sharded set-ups refused in one line."""

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import mftlab
from mftlab.cli.main import main
from mftlab.errors import ConfigError
from mftlab.integrations import MaskCallback
from mftlab.mft.masked_layer import MaskedLinear
from mftlab.mft.selection import num_masked

sys.path.insert(0, os.path.dirname(__file__))
from hf_setup import DEFAULTS, make_trainer, write_data  # noqa: E402

pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """A Trainer leaves accelerate's process-wide state behind (e.g. TRL's bf16); later tests start clean."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def _exact_k(mask, ratio):
    return all(mask.numel(n) - mask.kept(n) == num_masked(mask.numel(n), ratio) for n in mask)


class _FirstGradients:
    """Records each mask score's first gradient, for wrappers created anywhere (global forward hook)."""

    def __enter__(self):
        self.grads, self.hooked = {}, set()

        def hook(module, args):
            if isinstance(module, MaskedLinear) and module.param_name not in self.hooked:
                self.hooked.add(module.param_name)
                module.mask_scores.register_hook(
                    lambda g, name=module.param_name: self.grads.setdefault(name, g.detach().clone())
                )

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_trainer_with_mask_callback(tmp_path):
    data = write_data(tmp_path / "d.jsonl")
    loaded = mftlab.load_model("micro-llama")
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    handle = mftlab.mask_model(loaded.model, **DEFAULTS, base_name="micro-llama")
    trainer = make_trainer(loaded.model, loaded.tokenizer, data, tmp_path / "hf", MaskCallback(handle))
    with _FirstGradients() as hf:
        trainer.train()

    out = tmp_path / "hf"
    mask = mftlab.Mask.load(out / "mask.safetensors")
    assert _exact_k(mask, 0.1) and mask.method["steps"] == 3
    assert all(torch.equal(mask[n], k.cpu()) for n, k in handle.keep().items())
    assert _exact_k(mftlab.Mask.load(out / "checkpoint-2" / "mask.safetensors"), 0.1)
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logged) == 3 and all(abs(row["mask_ratio"] - 0.1) < 1e-3 for row in logged)
    assert sum(row["mask_flips"] for row in logged) > 0  # the masks moved
    result = CliRunner().invoke(main, ["inspect", str(out / "mask.safetensors"), "--model", "micro-llama"])
    assert result.exit_code == 0 and "fingerprints vs micro-llama: ok" in result.output, result.output
    handle.unload()
    assert all(torch.equal(p, before[n]) for n, p in loaded.model.named_parameters())

    # The same first step in `mftlab train` (same scores, same batch, same token-weighted loss).
    config = mftlab.TrainConfig(
        model="micro-llama",
        data=data,
        out=str(tmp_path / "mft"),
        max_steps=1,
        batch_size=4,
        max_grad_norm=0.0,
        max_seq_len=32,
        **DEFAULTS,
    )
    with _FirstGradients() as ours:
        mftlab.train(config)
    assert sorted(ours.grads) == sorted(hf.grads) and len(ours.grads) == 28  # 4 layers x 7 projections
    for name, grad in ours.grads.items():
        torch.testing.assert_close(hf.grads[name], grad, rtol=1e-5, atol=1e-9)
    assert any(float(g.abs().max()) > 0 for g in ours.grads.values())


def test_sharded_trainer_is_refused(tmp_path):
    loaded = mftlab.load_model("micro-llama")
    handle = mftlab.mask_model(loaded.model)
    data = write_data(tmp_path / "d.jsonl")
    callback = MaskCallback(handle)
    from transformers import TrainingArguments

    for kind, args in (("FSDP", {"fsdp": "full_shard"}), ("DeepSpeed", {"deepspeed": {"train_batch_size": 4}})):
        arguments = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
        object.__setattr__(arguments, next(iter(args)), next(iter(args.values())))  # as a launcher would set it
        with pytest.raises(ConfigError, match=f"^MaskCallback does not support {kind}: it shards the mask scores"):
            callback.on_train_begin(arguments, None, None)
    with pytest.raises(ConfigError, match="needs the handle"):
        MaskCallback(loaded.model)
    assert make_trainer(loaded.model, loaded.tokenizer, data, tmp_path / "ok", callback) is not None


def test_two_ddp_processes_agree(tmp_path):
    data = write_data(tmp_path / "d.jsonl", n=8)
    script = os.path.join(os.path.dirname(__file__), "ddp_trainer.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        script,
        data,
        str(tmp_path / "out"),
    ]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    digests = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert digests[0] == digests[1] and digests[0]["steps"] == 3 and digests[0]["world"] == 2
    mask = mftlab.Mask.load(tmp_path / "out" / "mask.safetensors")
    assert _exact_k(mask, 0.1)
    assert digests[0]["kept"] == {n: mask.kept(n) for n in mask}
    assert os.path.exists(tmp_path / "out" / "checkpoint-2" / "mask.safetensors")


def test_trl_sft_trainer(tmp_path):
    trl = pytest.importorskip("trl")
    import datasets

    loaded = mftlab.load_model("micro-llama")
    handle = mftlab.mask_model(loaded.model, mask_ratio=0.1, base_name="micro-llama")
    data = datasets.Dataset.from_list([{"prompt": f"{i}+1=", "completion": str(i + 1)} for i in range(8)])
    args = trl.SFTConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        learning_rate=0.05,
        disable_tqdm=True,
        max_length=32,
        bf16=False,
    )
    trainer = trl.SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=data,
        processing_class=loaded.tokenizer,
        callbacks=[MaskCallback(handle)],
    )
    trainer.train()
    mask = mftlab.Mask.load(tmp_path / "mask.safetensors")
    assert _exact_k(mask, 0.1) and handle.steps == 2 and mask.method["steps"] == 2


def test_attached_callback_reaches_the_trainers_trackers(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import Trainer, TrainingArguments

    loaded = mftlab.load_model("micro-llama")
    handle = mftlab.mask_model(loaded.model, layers="0")
    rows = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 100, (4, 8)).tolist()]
    args = TrainingArguments(
        str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        use_cpu=True,
        report_to="tensorboard",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(model=loaded.model, args=args, train_dataset=rows)
    MaskCallback.attach(trainer, handle)
    trainer.train()
    found = [root for root, _, files in os.walk(tmp_path) if any(f.startswith("events.out") for f in files)]
    assert len(found) == 1, found
    events = EventAccumulator(found[0])
    events.Reload()
    assert [e.step for e in events.Scalars("train/mask_ratio")] == [1, 2]
    assert all(abs(e.value - 0.1) < 1e-3 for e in events.Scalars("train/mask_ratio"))
    assert "train/mask_flips" in events.Tags()["scalars"]
