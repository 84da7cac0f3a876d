"""The planner's counts and memory terms against real tiny models and real optimizers (CPU, offline)."""

import pytest
import torch

from mftlab.errors import ConfigError, ModelLoadError
from mftlab.model_shapes import count_shape, load_config, meta_model, model_shape
from mftlab.planning import PlanConfig, make_plan, parse_grid, plan
from mftlab.presets import build_preset
from mftlab.targeting import TargetSpec, resolve_targets


def terms(result):
    return {t.name: t.value for t in result.memory + result.time}


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-llama-tied", "tiny-gpt2"])
def test_meta_counts_equal_real_model(preset):
    real, _ = build_preset(preset)
    meta = meta_model(load_config(preset))
    assert next(meta.parameters()).device.type == "meta"
    assert count_shape(meta, preset) == count_shape(real, preset)
    assert count_shape(real, preset).params == sum(p.numel() for p in real.parameters())
    spec = TargetSpec.parse("all-linear", "1-2")
    assert resolve_targets(meta, spec) == resolve_targets(real, spec)


def test_folder_and_config_json_give_the_same_shape(tiny_llama, tmp_path):
    tiny_llama.config.save_pretrained(tmp_path)
    expected = count_shape(tiny_llama, "x")
    for source in (tmp_path, tmp_path / "config.json"):
        shape, targets = model_shape(str(source), TargetSpec.parse("q_proj"))
        assert shape.params == expected.params and shape.matmul_params == expected.matmul_params
        assert [t.numel for t in targets] == [32 * 32, 32 * 32]


def test_builtin_llama2_7b_shape():
    shape, targets = model_shape("llama2-7b", TargetSpec.parse("all-linear", "4-7"))
    assert shape.params == 6_738_415_616  # the published LLaMA-2-7B count
    assert shape.layers == 32 and shape.dtype == "float16"
    assert sum(t.numel for t in targets) == 4 * (4 * 4096 * 4096 + 3 * 4096 * 11008)


@pytest.mark.parametrize("score_dtype,torch_dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_score_and_optimizer_terms_match_adamw(score_dtype, torch_dtype):
    result = make_plan(PlanConfig("tiny-llama", layers="0-1", score_dtype=score_dtype))
    T = result.targeted_weights
    scores = torch.zeros(T, dtype=torch_dtype, requires_grad=True)
    optimizer = torch.optim.AdamW([scores], lr=1e-3)
    scores.grad = torch.ones_like(scores)
    optimizer.step()
    state = optimizer.state[scores]
    state_bytes = sum(v.nbytes for k, v in state.items() if k != "step")  # 'step' is one scalar
    got = terms(result)
    assert got["AdamW states"] == state_bytes
    assert got["scores"] == scores.nbytes
    assert got["score grads"] == scores.grad.nbytes
    assert got["keep-mask buffer"] == torch.ones(T, dtype=torch.bool).nbytes


def test_fft_terms_match_adamw_on_the_real_model():
    model, _ = build_preset("tiny-gpt2")
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    states = sum(v.nbytes for p in params for k, v in optimizer.state[p].items() if k != "step")
    got = terms(make_plan(PlanConfig("tiny-gpt2", method="fft")))
    assert got["AdamW states"] == states
    assert got["grads"] == sum(p.grad.nbytes for p in params)
    assert got["weights"] == sum(p.nbytes for p in params)


def test_deep_local_mft_needs_fewer_activations_and_flops():
    shallow = make_plan(PlanConfig("tiny-llama", layers="0"))
    deep = make_plan(PlanConfig("tiny-llama", layers="3"))
    assert shallow.targeted_weights == deep.targeted_weights
    assert (shallow.first_layer, deep.first_layer) == (0, 3)
    assert terms(deep)["activations"] * 4 == terms(shallow)["activations"]
    assert terms(deep)["backward (input grads)"] < terms(shallow)["backward (input grads)"]
    assert deep.memory_per_gpu < shallow.memory_per_gpu


def test_sharding_divides_the_sharded_parts():
    base = dict(model="tiny-llama", gpus=4, batch_size=8)
    none, zero2, zero3 = (terms(make_plan(PlanConfig(**base, sharding=s))) for s in ("none", "zero2", "zero3"))
    assert zero2["AdamW states"] * 4 == none["AdamW states"] and zero2["weights (frozen)"] == none["weights (frozen)"]
    assert zero3["weights (frozen)"] * 4 == none["weights (frozen)"] and "gathered layers (zero3/fsdp)" in zero3
    assert "DDP gradient buckets" in none and "DDP gradient buckets" not in zero2
    assert zero2["keep-mask buffer"] == none["keep-mask buffer"]  # buffers are never sharded


def test_checkpointing_trades_activations_for_recompute():
    off = terms(make_plan(PlanConfig("tiny-llama", seq_len=256)))
    on = terms(make_plan(PlanConfig("tiny-llama", seq_len=256, checkpointing=True)))
    assert on["checkpointed layer inputs"] + on["recomputed layer"] < off["activations"]
    assert on["recompute (checkpointing)"] > 0 and "recompute (checkpointing)" not in off


def test_totals_add_up_and_run_time():
    result = make_plan(PlanConfig("tiny-llama", examples=100, seq_len=128, epochs=2))
    assert result.memory_per_gpu == pytest.approx(sum(t.value for t in result.memory if t.counted))
    assert terms(result)["optimizer steps"] == 25  # ceil(2 x 100 x 128 / (8 x 128))
    assert result.total_seconds == pytest.approx(25 * result.step_seconds)


def test_landscape_time_scales_with_points():
    small = make_plan(PlanConfig("tiny-llama", task="landscape", grid="5x5"))
    line = make_plan(PlanConfig("tiny-llama", task="landscape", grid="10", gpus=2))
    assert small.total_seconds == pytest.approx(25 * (line.total_seconds * 2 / 10))
    assert parse_grid("21x21") == (21, 21) and parse_grid("41") == (41, 1)


def test_plan_is_pure_arithmetic():
    real, _ = build_preset("tiny-llama")
    shape = count_shape(real, "tiny-llama")
    targets = resolve_targets(real, TargetSpec.parse("all-linear", "2"))
    assert plan(PlanConfig("tiny-llama", layers="2"), shape, targets) == make_plan(PlanConfig("tiny-llama", layers="2"))


@pytest.mark.parametrize("kwargs,match", [
    (dict(grid="21by21"), "--grid '21by21'"),
    (dict(mfu=1.5), "--mfu 1.5"),
    (dict(batch_size=3, gpus=2), "--batch-size 3 is not a multiple"),
    (dict(tokens=10, examples=10), "give one of them"),
    (dict(seq_len=0), "--seq-len 0"),
    (dict(gpu="v100"), "--gpu 'v100'"),
])
def test_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PlanConfig("tiny-llama", **kwargs)


def test_unknown_models(tmp_path):
    with pytest.raises(ModelLoadError, match="'no-such-model'.*llama2-7b"):
        load_config("no-such-model")
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_config(str(tmp_path))


def _saved_activation_bytes(model, ids) -> int:
    """Bytes autograd saves for backward in one forward pass, parameters (no activations) left out."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        if t.numel() > 1 and t.untyped_storage().data_ptr() not in params:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids)
    return sum(seen.values())


@pytest.mark.parametrize("layers", ["0", "3", "0-3"])
def test_activation_estimate_matches_what_autograd_saves(layers):
    # fp32 on CPU with SDPA; the weights a mask trains need their inputs saved, as the STE does.
    model, _ = build_preset("tiny-llama")
    model.config._attn_implementation = "sdpa"
    model.requires_grad_(False)
    params = dict(model.named_parameters())
    for t in resolve_targets(model, TargetSpec.parse("all-linear", layers)):
        params[t.param_name].requires_grad_(True)
    measured = _saved_activation_bytes(model, torch.randint(0, 100, (2, 256)))
    got = terms(make_plan(PlanConfig("tiny-llama", layers=layers, batch_size=2, seq_len=256, precision="fp32")))
    estimate = got["activations"] + got["logits + grad"] / 2  # no loss here: the logits without their gradient
    assert 0.75 < measured / estimate < 1.25
