import json
import os

import pytest
from click.testing import CliRunner

from mftlab.cli.main import main


@pytest.fixture
def setup(tmp_path, tiny_llama, tokenizer):
    model = tmp_path / "model"
    tiny_llama.save_pretrained(model)
    tokenizer.save_pretrained(model)
    lines = [json.dumps({"prompt": f"{a}+{b}=", "completion": str(a + b)}) for a in range(5) for b in range(5)]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "val.jsonl").write_text("\n".join(lines[:8]) + "\n")
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_ratio_sweep_writes_results_and_reuses_points(setup):
    out = setup / "sweep"
    args = [
        "sweep",
        "ratio",
        setup / "model",
        "--data",
        setup / "train.jsonl",
        "--eval-data",
        setup / "val.jsonl",
        "--out",
        out,
        "--ratios",
        "0.05,0.3",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--score-lr",
        "0.01",
    ]
    result = run(*args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert [p["label"] for p in doc["points"]] == ["0.05", "0.3"]
    assert doc["points"][1]["mask_ratio"] == pytest.approx(0.3, abs=0.01)
    assert (out / "sweep_ratio.png").stat().st_size > 5000
    stamp = os.path.getmtime(out / "points" / "ratio-0.05" / "result.json")
    again = run(*args)
    assert again.exit_code == 0
    assert os.path.getmtime(out / "points" / "ratio-0.05" / "result.json") == stamp


def test_layers_sweep_groups(setup):
    out = setup / "layers"
    result = run(
        "sweep",
        "layers",
        setup / "model",
        "--data",
        setup / "train.jsonl",
        "--eval-data",
        setup / "val.jsonl",
        "--out",
        out,
        "--group-size",
        "1",
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--no-figures",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert [p["label"] for p in doc["points"]] == ["0-0", "1-1"]


@pytest.mark.parametrize(
    "extra, match, code",
    [
        (["--group-size", "9"], "--group-size 9 exceeds the model's 2 layers", 1),
        (["--ratios", "0.1,x"], "is not a comma list of numbers", 1),
        (["--ratios", "1.5"], "--mask-ratio 1.5 is outside", 1),
    ],
)
def test_bad_sweep_options(setup, extra, match, code):
    axis = "layers" if "--group-size" in extra else "ratio"
    result = run(
        "sweep",
        axis,
        setup / "model",
        "--data",
        setup / "train.jsonl",
        "--eval-data",
        setup / "val.jsonl",
        "--out",
        setup / "bad",
        "--max-steps",
        "1",
        *extra,
    )
    assert result.exit_code == code, result.output
    assert match in result.output and "Traceback" not in result.output


def test_selection_uses_validation_when_test_disagrees(tmp_path):
    from mftlab.figures import sweep_figures
    from mftlab.files.results import write_json
    from mftlab.recipes.sweeps import markdown, select_point, sweep_table

    # The test winner (1e-4) is not the validation winner (1e-3): validation decides.
    points = [
        {
            "name": "score-lr-0.0001",
            "label": "0.0001",
            "value": 1e-4,
            "loss": 0.50,
            "answer_accuracy": 0.3,
            "test_loss": 0.10,
            "test_answer_accuracy": 0.9,
            "step0_loss": 0.7,
        },
        {
            "name": "score-lr-0.001",
            "label": "0.001",
            "value": 1e-3,
            "loss": 0.40,
            "answer_accuracy": 0.4,
            "test_loss": 0.90,
            "test_answer_accuracy": 0.1,
            "step0_loss": 0.7,
        },
        {
            "name": "score-lr-0.01",
            "label": "0.01",
            "value": 1e-2,
            "loss": float("nan"),
            "answer_accuracy": 0.0,
            "test_loss": 0.05,
            "test_answer_accuracy": 1.0,
            "step0_loss": 0.7,
        },
    ]
    assert select_point(points) == 1
    points[2]["loss"] = 2.0
    for i, p in enumerate(points):
        p["selected"] = i == 1
    doc = {
        "kind": "sweep",
        "axis": "score-lr",
        "points": points,
        "reference": {"loss": 0.45, "answer_accuracy": 0.35, "test_loss": 0.4, "test_answer_accuracy": 0.4},
    }
    rows = sweep_table(doc)
    marked = [r[0] for r in rows[1:] if "selected" in r[-1]]
    assert marked == ["0.001"]
    assert "test loss" in rows[0] and "| 0.001 | 0.4000 |" in markdown(rows)
    write_json(tmp_path / "sweep.json", doc)
    assert (tmp_path / "sweep_score-lr.png") in [tmp_path / os.path.basename(p) for p in sweep_figures.render(tmp_path)]


def test_score_lr_sweep_selects_on_validation_and_resumes(setup):
    out = setup / "score-lr"
    (setup / "test.jsonl").write_text((setup / "train.jsonl").read_text())
    args = [
        "sweep",
        "score-lr",
        setup / "model",
        "--data",
        setup / "train.jsonl",
        "--eval-data",
        setup / "val.jsonl",
        "--test-data",
        setup / "test.jsonl",
        "--out",
        out,
        "--score-lrs",
        "0.001,0.5",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--mask-ratio",
        "0.3",
    ]
    result = run(*args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert [p["label"] for p in doc["points"]] == ["0.001", "0.5"]
    losses = [p["loss"] for p in doc["points"]]
    chosen = losses.index(min(losses))
    assert doc["selected"] == doc["points"][chosen]["name"]
    assert [p["selected"] for p in doc["points"]] == [i == chosen for i in range(2)]
    assert all("test_loss" in p and p["step0_loss"] is not None for p in doc["points"])
    table = (out / "sweep.md").read_text()
    assert "**selected**" in table and "were not used to choose" in table
    assert "<- selected" in result.output
    assert (out / "sweep_score-lr.png").stat().st_size > 5000
    stamp = os.path.getmtime(out / "points" / "score-lr-0.001" / "result.json")
    assert run(*args).exit_code == 0
    assert os.path.getmtime(out / "points" / "score-lr-0.001" / "result.json") == stamp


def test_score_init_sweep_starts_from_different_step0_masks(setup):
    out = setup / "score-init"
    result = run(
        "sweep",
        "score-init",
        setup / "model",
        "--data",
        setup / "train.jsonl",
        "--eval-data",
        setup / "val.jsonl",
        "--out",
        out,
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--mask-ratio",
        "0.3",
        "--no-figures",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert [p["label"] for p in doc["points"]] == ["random", "magnitude"]
    assert doc["points"][0]["step0_loss"] != doc["points"][1]["step0_loss"]
    assert sum(p["selected"] for p in doc["points"]) == 1
