"""Per-example files and `mftlab compare-evals` / `mftlab.compare_evals`: pairing, checks, output, figure."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import mftlab
from mftlab.cli.main import main
from mftlab.errors import MftlabError
from mftlab.significance.per_example import read_per_example, write_per_example


def _rows(correct, losses=None, ids=True, keys=None, scored_by="teacher-forcing"):
    rows = []
    for i, c in enumerate(correct):
        loss = 1.0 if losses is None else float(losses[i])
        rows.append(
            {
                "index": i,
                "id": f"q{i}" if ids else None,
                "key": keys[i] if keys else f"k{i}",
                "tokens": 2,
                "loss_sum": 2 * loss,
                "loss": loss,
                "answer_correct": int(c),
                "scored_by": scored_by,
                "correct": int(c),
            }
        )
    return rows


def invoke(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    a = (rng.random(200) < 0.4).astype(int)
    b = a.copy()
    b[rng.choice(np.flatnonzero(a == 0), 30, replace=False)] = 1  # 30 more right answers, none lost
    la = rng.normal(2.0, 0.3, 200)
    paths = {
        "a": write_per_example(tmp_path / "a.jsonl", _rows(a, la)),
        "b": write_per_example(tmp_path / "b.jsonl", _rows(b, la - 0.05 + rng.normal(0.0, 0.05, 200))),
    }
    return paths, a, b


def test_rows_are_paired_by_id_whatever_their_order(files):
    (paths, a, b) = files
    shuffled = read_per_example(paths["b"])[::-1]
    by_file = mftlab.compare_evals(paths["a"], paths["b"]).comparisons[0].stats
    by_rows = mftlab.compare_evals(read_per_example(paths["a"]), shuffled).comparisons[0].stats
    assert by_rows.difference == by_file.difference == pytest.approx(30 / 200)
    assert by_file.discordant == (30, 0) and by_file.p_value < 1e-6


def test_compare_evals_prints_the_interval_and_test_and_json_has_the_numbers(files):
    (paths, _, _) = files
    text = invoke("compare-evals", paths["a"], paths["b"]).output
    assert "B - A  +15.00 points, 95% CI [" in text and "(right in B only: 30 examples, in A only: 0)" in text
    assert "significant at 5%" in text and "Holm" not in text
    values = json.loads(invoke("compare-evals", paths["a"], paths["b"], "--metric", "loss", "--json").stdout)
    [row] = values["comparisons"]
    assert row["test"] == "permutation" and row["difference"] == pytest.approx(-0.05, abs=0.01)
    assert row["ci_low"] < row["difference"] < row["ci_high"] < 0 and row["significant"]
    assert values["correction"] == "none"


def test_several_pairs_are_holm_adjusted_and_saved_with_a_forest_plot(files, tmp_path):
    (paths, _, _) = files
    out = tmp_path / "sig"
    args = [paths["a"], paths["b"], paths["a"], paths["a"]]
    result = invoke("compare-evals", *args, "--pairs", "--out", out)
    assert "Holm's correction over 2 comparisons" in result.output
    saved = json.loads((out / "significance.json").read_text())
    gain, none = saved["comparisons"]
    assert saved["kind"] == "mftlab.significance" and saved["correction"] == "holm"
    assert gain["p_adjusted"] == pytest.approx(min(1.0, 2 * gain["p_value"])) and none["p_adjusted"] == 1.0
    assert (out / "forest_plot.png").stat().st_size > 5000 and (out / "forest_plot.html").exists()
    (out / "forest_plot.png").unlink()
    assert str(out / "forest_plot.png") in invoke("plot", out).output  # redrawn from the saved result


def test_different_example_sets_are_one_error_line(files, tmp_path):
    (paths, a, _) = files
    shorter = write_per_example(tmp_path / "short.jsonl", _rows(a[:150]))
    other_ids = write_per_example(tmp_path / "ids.jsonl", [dict(r, id=f"x{r['index']}") for r in _rows(a)])
    other_text = write_per_example(tmp_path / "text.jsonl", _rows(a, ids=False, keys=[f"z{i}" for i in range(200)]))
    no_ids = write_per_example(tmp_path / "noid.jsonl", _rows(a, ids=False))
    generated = write_per_example(tmp_path / "gen.jsonl", _rows(a, scored_by="generation"))
    not_examples = tmp_path / "data.jsonl"
    not_examples.write_text('{"prompt": "1+1=", "completion": "2"}\n')
    cases = {
        shorter: "has 200 examples and",
        other_ids: "example id 'q0' of",
        other_text: "its text does not match",
        generated: "scores exact match by teacher-forcing and",
        not_examples: "has no 'index': not a per-example file",
        tmp_path / "missing.jsonl": "does not exist",
    }
    for other, message in cases.items():
        result = invoke("compare-evals", paths["a"], other, code=1)
        assert message in result.output and result.output.count("\n") == 1, result.output
    assert (
        invoke("compare-evals", no_ids, paths["a"]).exit_code == 0
    )  # ids on one side only: paired by line, keys agree
    assert "is not one of" in invoke("compare-evals", paths["a"], paths["b"], "--metric", "f1", code=2).output
    assert "several pairs need --pairs" in invoke("compare-evals", paths["a"], paths["b"], paths["a"], code=2).output


def test_lm_eval_rows_have_no_loss(tmp_path, files):
    (paths, _, _) = files
    rows = [{"index": i, "id": f"t/{i}", "scored_by": "lm-eval:acc", "correct": float(i % 2)} for i in range(200)]
    lm = write_per_example(tmp_path / "lm.jsonl", rows)
    result = invoke("compare-evals", lm, lm, "--metric", "loss", code=1)
    assert "has no per-example loss (scored by lm-eval:acc); use --metric exact_match" in result.output


def test_eval_per_example_rows_add_up_to_the_reported_numbers(llama_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    records = [{"id": f"r{i}", "prompt": f"{i}+{i}=", "completion": str(2 * i)} for i in range(7)]
    records.append({"text": "no reference here"})
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    path = tmp_path / "rows.jsonl"
    result = invoke("eval", llama_dir, "--data", data, "--per-example", path, "--max-new-tokens", "3", "--json")
    values = json.loads(result.stdout)  # stdout stays JSON; the "wrote" line goes to stderr
    rows = read_per_example(path)
    assert [r["index"] for r in rows] == list(range(8)) and [r["id"] for r in rows] == [f"r{i}" for i in range(7)] + [
        None
    ]
    assert sum(r["tokens"] for r in rows) == values["tokens"]
    assert sum(r["loss_sum"] for r in rows) / values["tokens"] == pytest.approx(values["loss"], rel=1e-6)
    assert [r["scored_by"] for r in rows] == ["generation"] * 7 + ["teacher-forcing"]
    assert sum(r["correct"] for r in rows[:7]) / 7 == values["exact_match"]
    assert sum(r["answer_correct"] for r in rows) / 8 == pytest.approx(values["answer_accuracy"])
    assert all(r["reference"] == str(2 * i) for i, r in enumerate(rows[:7]))
    no_gen = tmp_path / "nogen.jsonl"
    invoke("eval", llama_dir, "--data", data, "--per-example", no_gen, "--no-generate")
    assert {r["scored_by"] for r in read_per_example(no_gen)} == {"teacher-forcing"}
    assert (
        "must be a .jsonl file"
        in invoke("eval", llama_dir, "--data", data, "--per-example", tmp_path / "x.csv", code=1).output
    )


def test_bad_arguments_of_the_api_are_one_line_errors(files):
    (paths, _, _) = files
    with pytest.raises(MftlabError, match="metric 'f1' is unknown"):
        mftlab.compare_evals(paths["a"], paths["b"], metric="f1")
    with pytest.raises(MftlabError, match="give two per-example results"):
        mftlab.compare_evals(paths["a"])
