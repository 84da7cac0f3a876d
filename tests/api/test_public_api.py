"""The public API (`import mftlab`): handle, Mask, baselines, analysis facades, errors in Python's words."""

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import mftlab
from mftlab.cli.main import main
from mftlab.mft.masked_layer import MaskedLinear
from mftlab.mft.selection import num_masked


def _data(path, n=8):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n")
    return str(path)


def test_import_is_light_and_help_lists_the_api():
    code = "import sys, mftlab; print('torch' in sys.modules, sorted(mftlab.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False")
    for name in (
        "load_model",
        "mask_model",
        "Mask",
        "baseline_mask",
        "mask_stats",
        "compare_masks",
        "landscape",
        "plot",
        "train",
        "TrainConfig",
    ):
        assert name in mftlab.__all__ and getattr(mftlab, name) is not None
        assert "Example" in (getattr(mftlab, name).__doc__ or ""), name
    import pydoc

    text = pydoc.render_doc(mftlab, renderer=pydoc.plaintext)
    assert "mask_model(" in text and "refresh" in text and "compare_masks(" in text


def test_mask_model_handle_round_trip(tmp_path):
    model = mftlab.load_model("micro-llama").model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    handle = mftlab.mask_model(model, targets="q_proj,v_proj", layers="0", mask_ratio=0.25, seed=3)
    assert len(handle.layers) == 2 and all(isinstance(m, MaskedLinear) for m in handle.layers.values())
    params = handle.trainable_parameters()
    assert [p.requires_grad for p in params] == [True, True]
    assert all(not p.requires_grad for n, p in model.named_parameters() if "mask_scores" not in n)
    optimizer = torch.optim.AdamW(params, lr=0.5)
    ids = torch.tensor([[5, 17, 23, 42, 8, 9]])
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    stats = handle.refresh()
    assert stats.flips > 0 and stats.mask_ratio == pytest.approx(0.25, abs=0.01)
    mask = handle.export()
    for name in mask:
        assert mask.numel(name) - mask.kept(name) == num_masked(mask.numel(name), 0.25)  # exact K
    path = handle.save(tmp_path / "m.safetensors")
    loaded = mftlab.Mask.load(path)
    assert loaded.method["name"] == "mft" and loaded.method["steps"] == 1
    assert all(torch.equal(loaded[n], mask[n]) for n in mask)
    keep = {n: k.clone() for n, k in handle.keep().items()}

    assert handle.unload() is model
    assert not any(isinstance(m, MaskedLinear) for m in model.modules())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # weights untouched
    with pytest.raises(mftlab.MftlabError, match="unloaded or merged"):
        handle.refresh()

    handle = mftlab.mask_model(model, targets="q_proj,v_proj", layers="0", mask_ratio=0.25, seed=3)
    for layer in handle.layers.values():
        layer.set_keep(keep[layer.param_name])
    handle.merge()
    weights = dict(model.named_parameters())
    for name, k in keep.items():
        assert torch.equal(weights[name], before[name] * k)  # masked weights zeroed in place
    assert loaded.check_fits({n: before[n] for n in loaded}) == []  # bound to the original weights


def test_mask_apply_to_is_reversible_and_matches_the_cli_baseline(tmp_path):
    model = mftlab.load_model("micro-llama").model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask = mftlab.baseline_mask(model, kind="magnitude", mask_ratio=0.1, layers="1", base_name="micro-llama")
    out = tmp_path / "cli.safetensors"
    result = CliRunner().invoke(
        main, ["baseline", "micro-llama", "--kind", "magnitude", "--layers", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    cli = mftlab.Mask.load(out)
    assert cli.names == mask.names and all(torch.equal(cli[n], mask[n]) for n in mask)

    with mask.apply_to(model) as applied:
        weights = dict(model.named_parameters())
        assert applied.mismatched == []
        assert all(torch.equal(weights[n], before[n] * mask[n]) for n in mask)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # restored bit for bit
    assert "nope" not in mask and len(mask) == len(mask.names)
    with pytest.raises(KeyError, match="not in this mask"):
        mask["nope"]


def test_wanda_baseline_from_python_matches_the_cli(tmp_path):
    data = tmp_path / "calib.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n" for i in range(8)))
    loaded = mftlab.load_model("micro-llama")
    with pytest.raises(mftlab.ConfigError, match="needs calibration data"):
        mftlab.baseline_mask(loaded.model, kind="wanda", layers="1")
    mask = mftlab.baseline_mask(
        loaded.model,
        kind="wanda",
        mask_ratio=0.1,
        layers="1",
        base_name="micro-llama",
        data=str(data),
        tokenizer=loaded.tokenizer,
        max_tokens=512,
    )
    assert mask.method["name"] == "wanda" and mask.method["calibration"]["tokens"] <= 512
    out = tmp_path / "wanda.safetensors"
    result = CliRunner().invoke(
        main,
        [
            "baseline",
            "micro-llama",
            "--kind",
            "wanda",
            "--layers",
            "1",
            "--data",
            str(data),
            "--max-tokens",
            "512",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    cli = mftlab.Mask.load(out)
    assert cli.names == mask.names and all(torch.equal(cli[n], mask[n]) for n in mask)


def test_errors_name_the_argument_in_python_and_the_flag_on_the_cli():
    model = mftlab.load_model("micro-llama").model
    with pytest.raises(mftlab.ConfigError, match=r"^mask_ratio=1.5 is outside \(0, 1\)"):
        mftlab.mask_model(model, mask_ratio=1.5)
    with pytest.raises(mftlab.ConfigError, match=r"^score_init='zeros' is unknown"):
        mftlab.mask_model(model, score_init="zeros")
    with pytest.raises(mftlab.ConfigError, match=r"^kind='l2' is unknown"):
        mftlab.baseline_mask(model, kind="l2")
    with pytest.raises(mftlab.ConfigError, match=r"^score_lr=-1 must be positive"):
        mftlab.TrainConfig(model="m", data="d", out="o", score_lr=-1)
    assert not any(isinstance(m, MaskedLinear) for m in model.modules())
    result = CliRunner().invoke(
        main, ["baseline", "micro-llama", "--kind", "random", "--mask-ratio", "1.5", "--out", "x.safetensors"]
    )
    assert result.exit_code == 1 and "Error: --mask-ratio 1.5 is outside (0, 1)" in result.output
    result = CliRunner().invoke(main, ["train", "micro-llama", "--data", "d.jsonl", "--out", "o", "--score-lr", "-1"])
    assert result.exit_code == 1 and "Error: --score-lr -1.0 must be positive" in result.output


def test_analysis_results_save_and_plot(tmp_path):
    model = mftlab.load_model("micro-llama").model
    a = mftlab.baseline_mask(model, kind="magnitude", mask_ratio=0.2)
    b = mftlab.baseline_mask(model, kind="random", mask_ratio=0.2, seed=1)
    stats = mftlab.mask_stats(a, model)
    assert stats.mask_ratio == pytest.approx(0.2, abs=0.01) and stats.has_weights
    assert sorted(os.path.basename(p) for p in stats.save(tmp_path / "stats")) == ["stats.csv", "stats.json"]
    overlap = mftlab.compare_masks([a, b], labels=["l1", "rand"])
    overlap.save(tmp_path / "overlap")
    assert 0 < overlap.overall("l1", "rand")["jaccard"] < 1
    assert os.path.exists(tmp_path / "overlap" / "overlap.json")  # drawn by mftlab.plot in the README test
    os.makedirs(tmp_path / "empty")
    with pytest.raises(mftlab.MftlabError, match="no results found"):
        mftlab.plot(tmp_path / "empty")


def test_landscape_facade_restores_the_model(tmp_path):
    loaded = mftlab.load_model("micro-llama")
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    train, test = _data(tmp_path / "train.jsonl"), _data(tmp_path / "test.jsonl", 4)
    result = mftlab.landscape(loaded, train, test, grid="3", max_tokens=32, max_seq_len=32, out=tmp_path / "ls")
    assert result.train_loss.shape == (1, 3) and torch.isfinite(torch.from_numpy(result.test_loss)).all()
    assert all(torch.equal(p, before[n]) for n, p in loaded.model.named_parameters())
    saved = result.save(tmp_path / "copy")
    assert [os.path.getsize(p) for p in saved] == [
        os.path.getsize(tmp_path / "ls" / os.path.basename(p)) for p in saved
    ]


def test_mask_model_takes_the_selection_as_one_config_object():
    from mftlab.mft.masking import SelectionConfig

    model = mftlab.load_model("micro-llama").model
    by_keywords = mftlab.mask_model(model, layers="0", mask_ratio=0.3, granularity="row", seed=1)
    keywords_mask = by_keywords.export()
    by_keywords.unload()
    config = SelectionConfig(mask_ratio=0.3, granularity="row")
    by_object = mftlab.mask_model(model, layers="0", selection=config, seed=1)
    object_mask = by_object.export()
    assert object_mask.method["granularity"] == "row" and object_mask.method["mask_ratio"] == 0.3
    assert all(torch.equal(object_mask[n], keywords_mask[n]) for n in keywords_mask)
    by_object.unload()
