"""The planner's counts and memory terms against real tiny models and real optimizers (CPU, offline)."""

import pytest
import torch

from mftlab.errors import ConfigError, ModelLoadError
from mftlab.grid import parse_grid
from mftlab.mft.targeting import TargetSpec, resolve_targets
from mftlab.models.presets import build_preset
from mftlab.models.shapes import count_shape, load_config, meta_model, model_shape
from mftlab.plan.planner import PlanConfig, make_plan, plan


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
    # pure_bf16: AdamW on the scores themselves (the master-weights case is tested below)
    result = make_plan(PlanConfig("tiny-llama", layers="0-1", score_dtype=score_dtype, pure_bf16=True))
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


def test_fsdp_divides_the_sharded_parts_and_keeps_buffers_whole():
    base = dict(model="tiny-llama", gpus=4, batch_size=8)
    none, fsdp = (terms(make_plan(PlanConfig(**base, sharding=s))) for s in ("none", "fsdp"))
    assert fsdp["AdamW states"] * 4 == none["AdamW states"]  # fp32 scores: no master either way
    assert fsdp["weights (frozen)"] * 4 == none["weights (frozen)"]
    assert fsdp["scores"] * 4 == none["scores"] and fsdp["score grads"] * 4 == none["score grads"]
    assert "gathered layers (fsdp)" in fsdp and "gathered root unit (fsdp)" in fsdp
    assert "DDP gradient buckets" in none and "DDP gradient buckets" not in fsdp
    assert fsdp["keep-mask buffer"] == none["keep-mask buffer"]  # replicated, never sharded


def test_fsdp_fft_holds_fp32_sharded_values_and_gathers_two_layers_plus_root():
    """SCALE_CONTRACT: bf16 load, FSDP over g: 4 + 4 + 8 B per parameter / g, compute copies in bf16."""
    shape, _ = model_shape("llama2-7b", None)
    got = terms(
        make_plan(
            PlanConfig("llama2-7b", method="fft", dtype="bfloat16", sharding="fsdp", gpus=8, batch_size=8, seq_len=512)
        )
    )
    N = shape.params
    assert got["weights"] == N * 4 / 8 and got["grads"] == N * 4 / 8 and got["AdamW states"] == N * 8 / 8
    layer = max(shape.layer_params)
    assert got["gathered layers (fsdp)"] == 2 * layer * 2
    assert got["gathered root unit (fsdp)"] == (N - sum(shape.layer_params)) * 2
    assert "fp32 master copy" not in got  # FSDP2's fp32 sharded parameters are the master
    pure = terms(
        make_plan(
            PlanConfig(
                "llama2-7b",
                method="fft",
                dtype="bfloat16",
                sharding="fsdp",
                gpus=8,
                batch_size=8,
                seq_len=512,
                pure_bf16=True,
            )
        )
    )
    assert pure["weights"] == N * 2 / 8 and pure["AdamW states"] == N * 4 / 8


def test_fsdp_mft_gathers_weights_in_their_dtype_and_scores_in_fp32():
    """fp32 scores get no mixed-precision policy: a gathered layer is weights x b_w + scores x 4."""
    shape, _ = model_shape("llama2-7b", None)
    got = terms(
        make_plan(
            PlanConfig("llama2-7b", layers="4-7", dtype="bfloat16", sharding="fsdp", gpus=8, batch_size=8, seq_len=512)
        )
    )
    layer_scores = 4 * 4096 * 4096 + 3 * 4096 * 11008
    T = 4 * layer_scores
    assert got["gathered layers (fsdp)"] == 2 * (max(shape.layer_params) * 2 + layer_scores * 4)
    assert got["sharded selection transient (fsdp)"] == pytest.approx(T * (4 / 8 + 1 + 1 / 8))
    assert got["scores"] == T * 4 / 8 and got["weights (frozen)"] == shape.params * 2 / 8


def test_fp32_master_weights_for_bf16_fft_match_real_tensors():
    """DDP / one process, bf16 load: 2 (model) + 4 (master) + 2 (grads) + 4 (master grads) + 8 (AdamW) B."""
    model, _ = build_preset("tiny-gpt2")
    model.to(torch.bfloat16)
    params = list(model.parameters())
    master = [p.detach().float().requires_grad_(True) for p in params]
    optimizer = torch.optim.AdamW(master, lr=1e-3)
    for p, m in zip(params, master):
        p.grad = torch.zeros_like(p)
        m.grad = p.grad.float()
    optimizer.step()
    got = terms(make_plan(PlanConfig("tiny-gpt2", method="fft", dtype="bfloat16")))
    assert got["weights"] == sum(p.nbytes for p in params)
    assert got["grads"] == sum(p.grad.nbytes for p in params)
    assert got["fp32 master copy"] == sum(m.nbytes for m in master)
    assert got["fp32 master grads"] == sum(m.grad.nbytes for m in master)
    assert got["AdamW states"] == sum(v.nbytes for m in master for k, v in optimizer.state[m].items() if k != "step")
    pure = terms(make_plan(PlanConfig("tiny-gpt2", method="fft", dtype="bfloat16", pure_bf16=True)))
    assert "fp32 master copy" not in pure and pure["AdamW states"] == got["AdamW states"] / 2
    fp32 = terms(make_plan(PlanConfig("tiny-gpt2", method="fft", dtype="float32")))
    assert "fp32 master copy" not in fp32  # fp32 load: nothing to master


def test_bf16_scores_get_fp32_master_scores_fp32_scores_do_not():
    bf16 = terms(make_plan(PlanConfig("tiny-llama", layers="0-1", score_dtype="bf16")))
    fp32 = terms(make_plan(PlanConfig("tiny-llama", layers="0-1", score_dtype="fp32")))
    T = make_plan(PlanConfig("tiny-llama", layers="0-1")).targeted_weights
    assert bf16["scores"] == T * 2 and bf16["fp32 master copy"] == T * 4 and bf16["AdamW states"] == T * 8
    assert "fp32 master copy" not in fp32 and fp32["AdamW states"] == T * 8


def test_checkpointing_trades_activations_for_recompute():
    off = terms(make_plan(PlanConfig("tiny-llama", seq_len=256)))
    on = terms(make_plan(PlanConfig("tiny-llama", seq_len=256, gradient_checkpointing=True)))
    assert on["checkpointed layer inputs"] + on["recomputed layer"] < off["activations"]
    assert on["recompute (checkpointing)"] > 0 and "recompute (checkpointing)" not in off


def test_landscape_planes_model_what_the_planes_hold():
    """random: pristine copy in the model's dtype + directions; models: A, B, C; line: A, B (model dtype)."""
    base = dict(model="tiny-llama", task="landscape", dtype="bfloat16")
    shape, _ = model_shape("tiny-llama", None)
    random, models, line = (
        terms(make_plan(PlanConfig(**base, plane=p, grid="5" if p == "line" else "5x5")))
        for p in ("random", "models", "line")
    )
    assert random["pristine theta0"] == shape.matrix_params * 2
    assert random["directions (cached)"] == 2 * shape.matrix_params * 4  # small: cached, as the code does
    assert models["models plane: A (pristine), B, C"] == 3 * shape.params * 2
    assert line["line plane: A (pristine), B"] == 2 * shape.params * 2
    big = terms(make_plan(PlanConfig("llama2-7b", task="landscape", grid="3x3")))
    assert big["directions (regenerated)"] == 2 * 32000 * 4096 * 4  # the largest tensor, not the model
    cpu = make_plan(PlanConfig(**base, gpu="cpu"))
    assert terms(cpu)["CUDA context"] == 0 and cpu.gpu_memory > 0


def test_old_sharding_modes_and_unsupported_combinations_are_refused():
    for bad, match in (
        (dict(sharding="zero3"), "--sharding 'zero3'"),
        (dict(method="lora", sharding="fsdp"), "--sharding fsdp does not train LoRA"),
        (dict(task="landscape", plane="line", grid="5x5"), "--plane line is 1-D"),
        (dict(task="landscape", plane="models", grid="7"), "--plane models needs a 2-D"),
        (dict(task="landscape", plane="sphere"), "--plane 'sphere'"),
    ):
        with pytest.raises(ConfigError, match=match):
            PlanConfig("tiny-llama", **bad)


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


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(grid="21by21"), "--grid '21by21'"),
        (dict(mfu=1.5), "--mfu 1.5"),
        (dict(batch_size=3, gpus=2), "--batch-size 3 is not a multiple"),
        (dict(tokens=10, examples=10), "give one of them"),
        (dict(seq_len=0), "--seq-len 0"),
        (dict(gpu="v100"), "--gpu 'v100'"),
    ],
)
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


def test_mask_plan_counts_the_packed_flip_copies_the_loop_holds():
    """One full keep-mask (bool) plus two bit-packed copies (step 0, last log): what FlipCounter keeps."""
    from mftlab.mft.flip_counter import FlipCounter, packed_bytes
    from mftlab.mft.masking import SelectionConfig, attach_masks, refresh_masks

    result = make_plan(PlanConfig("tiny-llama", layers="0-1"))
    model, _ = build_preset("tiny-llama")
    layers = attach_masks(model, resolve_targets(model, TargetSpec.parse("all-linear", "0-1", None)))
    counter = FlipCounter(refresh_masks(layers, SelectionConfig()))
    counter.count({n: m.keep for n, m in layers.items()})  # after a log: 'last' is its own copy
    held = sum(t.nbytes for t in counter.start.values()) + sum(t.nbytes for t in counter.last.values())
    assert held == 2 * packed_bytes({n: m.keep for n, m in layers.items()})
    assert terms(result)["packed masks for flip counts"] == pytest.approx(held, rel=0.01)


def test_eval_plan_counts_the_weights_one_layer_and_the_logits_without_an_fp32_copy():
    shape, _ = model_shape("llama2-7b", None)
    result = plan(PlanConfig("llama2-7b", task="eval", batch_size=16, seq_len=2048, dtype="bfloat16"), shape, [])
    got = terms(result)
    assert got["weights"] == shape.params * 2
    chunks = 2 * 2**24 * 4  # two fp32 chunks of the chunked loss
    assert got["logits + fp32 loss chunks"] == 16 * 2048 * 32000 * 2 + chunks  # bf16 logits, no fp32 copy
    assert result.fits and result.step_seconds is None


def test_fsdp_load_terms_put_the_checkpoint_on_rank_0_only():
    shape, targets = model_shape("llama2-7b", TargetSpec.parse("all-linear", "4-7", None))
    result = plan(PlanConfig("llama2-7b", gpus=8, sharding="fsdp", dtype="bfloat16", batch_size=8), shape, targets)
    got = terms(result)
    assert got["host RAM at load, rank 0 (fsdp)"] == shape.params * 2
    assert got["host RAM at load, ranks > 0 (fsdp)"] == 32000 * 4096 * 2  # the embedding in flight
    assert any("rank 0 alone loads" in note for note in result.notes)


def test_evaluation_between_steps_counts_only_what_exceeds_the_step():
    small = terms(make_plan(PlanConfig("tiny-llama", layers="0", eval_batch_size=1)))
    large = terms(make_plan(PlanConfig("tiny-llama", layers="0", eval_batch_size=512)))
    assert small["evaluation pass (between steps)"] == 0
    assert large["evaluation pass (between steps)"] > 0
