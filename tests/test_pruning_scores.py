"""Wanda and SNIP scores against direct computations, and the masks made from them."""

import pytest
import torch

from mftlab.errors import ConfigError, DataError, TargetError
from mftlab.mft.baselines import baseline_mask
from mftlab.mft.calibration import CalibrationConfig, calibration_from_examples, take_tokens, tokens_fingerprint
from mftlab.mft.pruning_scores import snip_scores, wanda_scores
from mftlab.mft.selection import num_masked
from mftlab.mft.targeting import TargetSpec, resolve_targets
from mftlab.training.data import IGNORE_INDEX, Example
from mftlab.training.evaluation import batch_loss_sums


def _examples(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 5 + (3 * i) % 9  # different lengths: batches carry padding
        ids = torch.randint(3, 100, (length,), generator=g).tolist()
        prompt = 2 + i % 3
        out.append(Example(ids, [IGNORE_INDEX] * prompt + ids[prompt:], ids[:prompt]))
    return out


def _calibration(batch_size=3, max_tokens=10_000, examples=None):
    config = CalibrationConfig("hand-made", max_tokens=max_tokens, batch_size=batch_size)
    return calibration_from_examples(config, examples or _examples(), pad_id=0)


def _recorded_norms(model, targets, calibration):
    """Column norms by hand: inputs recorded by our own hooks, padding removed with the attention mask."""
    seen = {t.param_name: [] for t in targets}
    handles = [
        model.get_submodule(t.module_name).register_forward_hook(
            lambda _m, inputs, _o, name=t.param_name: seen[name].append(inputs[0].detach().clone())
        )
        for t in targets
    ]
    masks = []
    with torch.no_grad():
        for batch in calibration.batches:
            masks.append(batch.attention_mask.bool())
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    for h in handles:
        h.remove()
    return {n: torch.cat([x[m] for x, m in zip(xs, masks)]).double().pow(2).sum(0).sqrt() for n, xs in seen.items()}


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_wanda_equals_weight_times_recorded_input_norms(fixture, request):
    model = request.getfixturevalue(fixture)
    targets = resolve_targets(model, TargetSpec.parse("all-linear"))
    calibration = _calibration()
    scores = wanda_scores(model, targets, calibration)
    norms = _recorded_norms(model, targets, calibration)
    for t in targets:
        w = model.get_submodule(t.module_name).weight.detach().double()
        # Linear [out, in]: feature j is column j; Conv1D [in, out]: feature j is row j.
        expected = w.abs() * (norms[t.param_name][None, :] if t.kind == "linear" else norms[t.param_name][:, None])
        assert scores[t.param_name].shape == w.shape
        torch.testing.assert_close(scores[t.param_name].double(), expected, rtol=1e-5, atol=1e-7)


def test_wanda_mask_equals_hand_made_topk(tiny_llama):
    spec = TargetSpec.parse("q_proj,down_proj", "1")
    calibration = _calibration()
    mask, targets = baseline_mask(tiny_llama, "wanda", 0.2, spec, granularity="tensor", calibration=calibration)
    norms = _recorded_norms(tiny_llama, targets, calibration)
    for t in targets:
        w = tiny_llama.get_submodule(t.module_name).weight.detach().float()
        score = (w.abs() * norms[t.param_name].float()[None, :]).flatten()
        k = num_masked(score.numel(), 0.2)
        masked = torch.zeros(score.numel(), dtype=torch.bool)
        masked[torch.argsort(score, stable=True)[:k]] = True
        assert torch.equal(mask.keep(t.param_name), ~masked.reshape(w.shape))


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_snip_equals_autograd_on_the_same_batches(fixture, request):
    model = request.getfixturevalue(fixture)
    targets = resolve_targets(model, TargetSpec.parse("all-linear", "0"))
    calibration = _calibration()
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    scores = snip_scores(model, targets, calibration)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert all(p.grad is None for p in model.parameters())

    weights = [model.get_submodule(t.module_name).weight for t in targets]
    loss = sum(batch_loss_sums(model, b)[0] for b in calibration.batches) / calibration.label_tokens
    grads = torch.autograd.grad(loss, weights)
    for t, w, g in zip(targets, weights, grads):
        torch.testing.assert_close(scores[t.param_name], (w.detach() * g).abs(), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("kind", ["wanda", "snip"])
@pytest.mark.parametrize("granularity", ["tensor", "row", "global"])
def test_exact_k_at_every_granularity(tiny_gpt2, kind, granularity):
    spec = TargetSpec.parse("all-linear", "1")
    mask, targets = baseline_mask(tiny_gpt2, kind, 0.15, spec, granularity=granularity, calibration=_calibration())
    masked = {t.param_name: ~mask.keep(t.param_name) for t in targets}
    if granularity == "global":
        total = sum(t.numel for t in targets)
        assert sum(int(m.sum()) for m in masked.values()) == num_masked(total, 0.15)
    for t in targets:
        m = masked[t.param_name]
        if granularity == "tensor":
            assert int(m.sum()) == num_masked(t.numel, 0.15)
        elif granularity == "row":  # Conv1D: output units are columns
            assert (m.sum(dim=t.out_axis ^ 1) == num_masked(t.shape[t.out_axis ^ 1], 0.15)).all()
    assert mask.method["selection"] == f"topk-{granularity}"


def test_metadata_records_the_calibration(tiny_llama):
    examples = _examples()
    calibration = _calibration(max_tokens=40, examples=examples)
    assert calibration.tokens == 40  # the last example is cut to fit
    mask, _ = baseline_mask(tiny_llama, "wanda", 0.1, TargetSpec.parse("v_proj"), calibration=calibration)
    method = mask.method
    assert method["name"] == "wanda" and method["selection"] == "topk-row"  # the paper's default
    calib = method["calibration"]
    assert calib["tokens"] == 40 and calib["batches"] == len(calibration.batches) and calib["max_tokens"] == 40
    assert calib["fingerprint"] == tokens_fingerprint(take_tokens(examples, 40))
    assert calib["fingerprint"] != tokens_fingerprint(take_tokens(examples, 41))
    assert "||X_j||_2" in method["score"]
    snip, _ = baseline_mask(tiny_llama, "snip", 0.1, TargetSpec.parse("v_proj"), calibration=calibration)
    assert snip.method["selection"] == "topk-tensor" and snip.method["calibration"]["label_tokens"] > 0


def test_bad_calibration_and_targets(tiny_llama):
    with pytest.raises(ConfigError, match="needs calibration data"):
        baseline_mask(tiny_llama, "snip", 0.1, TargetSpec.parse("v_proj"))
    with pytest.raises(DataError, match="has no tokens"):
        calibration_from_examples(CalibrationConfig("empty.jsonl"), [], pad_id=0)
    with pytest.raises(ConfigError, match="--max-tokens 1 is too small"):
        CalibrationConfig("x.jsonl", max_tokens=1)
    prompts_only = [Example([5, 6, 7], [IGNORE_INDEX] * 3, [5, 6, 7])]
    with pytest.raises(ConfigError, match="no answer tokens"):
        baseline_mask(
            tiny_llama,
            "snip",
            0.1,
            TargetSpec.parse("v_proj"),
            calibration=calibration_from_examples(CalibrationConfig("p.jsonl"), prompts_only, pad_id=0),
        )
    targets = resolve_targets(tiny_llama, TargetSpec.parse("v_proj", "0"))
    fake = [targets[0].__class__("model.embed_tokens", "model.embed_tokens.weight", (100, 32), "linear")]
    with pytest.raises(TargetError, match="is a Embedding, not an nn.Linear"):
        wanda_scores(tiny_llama, fake, _calibration())
