"""`mftlab eval --tasks`: lm-evaluation-harness on the masked model in memory, offline, on local task YAMLs.

The tasks are generated here: a `generate_until` exact-match task and a `multiple_choice` task over
jsonl files of the built-in tiny benchmark; nothing reaches a hub.
"""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.errors import ConfigError
from mftlab.harness.config import HarnessConfig
from mftlab.recipes.tinybench import generate_records

pytest.importorskip("lm_eval")

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
GENERATE = """task: tiny_math
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
CHOICE = """task: tiny_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """One task folder for the module: lm-eval indexes a folder once per process (seconds)."""
    tmp_path = tmp_path_factory.mktemp("lm-eval-tasks")
    folder = tmp_path / "tasks"
    folder.mkdir()
    records = generate_records("math", 12, 7)
    math = tmp_path / "math.jsonl"
    math.write_text("".join(json.dumps(r) + "\n" for r in records))
    choices = tmp_path / "choice.jsonl"
    rows = []
    for k, r in enumerate(records):
        wrong = [str(int(r["answer"]) + 1), str(int(r["answer"]) + 2)]
        options = wrong[: k % 2] + [r["answer"]] + wrong[k % 2 :]
        rows.append({"prompt": r["prompt"], "choices": options, "label": k % 2})
    choices.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tiny_math.yaml").write_text(GENERATE.format(path=math))
    (folder / "tiny_choice.yaml").write_text(CHOICE.format(path=choices))
    return folder


@pytest.fixture
def mask_path(tmp_path, llama_dir):
    path = tmp_path / "m.safetensors"
    invoke("baseline", llama_dir, "--kind", "magnitude", "--mask-ratio", "0.3", "--out", path)
    return path


def invoke(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output + (result.stderr or "")
    return result


def _metrics(results: dict) -> dict:
    return {task: {k: v for k, v in values.items() if k != "alias"} for task, values in results["results"].items()}


def test_a_masked_model_in_memory_scores_exactly_as_its_applied_copy_does_from_disk(
    tmp_path, llama_dir, mask_path, tasks
):
    import lm_eval
    from lm_eval.tasks import TaskManager

    common = ["--include-path", tasks, "--batch-size", "4"]
    masked = invoke("eval", llama_dir, "--mask", mask_path, "--tasks", "tiny_math,tiny_choice", *common, "--json")
    result = json.loads(masked.stdout)
    header = result["mftlab"]
    assert header["mask"] == str(mask_path) and header["mask_fingerprints"] == "match"
    assert header["method"]["name"] == "magnitude" and abs(header["mask_ratio"] - 0.3) < 0.01
    invoke("apply", llama_dir, mask_path, "--out", tmp_path / "merged")
    disk = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(tmp_path / "merged"), "dtype": "float32"},
        tasks=["tiny_math", "tiny_choice"],
        batch_size=4,
        device="cpu",
        task_manager=TaskManager(include_path=str(tasks)),
        verbosity="ERROR",
    )
    assert _metrics(result) == json.loads(json.dumps(_metrics(disk)))  # every digit
    assert 0 < result["results"]["tiny_choice"]["acc,none"] < 1  # a real score, not a constant
    plain = json.loads(invoke("eval", llama_dir, "--tasks", "tiny_choice", *common, "--json").stdout)
    assert plain["mftlab"]["mask"] is None  # without the mask: the model as saved


def test_terminal_lines_output_path_and_samples(tmp_path, llama_dir, tasks):
    out = tmp_path / "res"
    shown = invoke(
        "eval",
        llama_dir,
        "--tasks",
        "tiny_choice",
        "--include-path",
        tasks,
        "--limit",
        "4",
        "--log-samples",
        "--output-path",
        out,
    )
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("tiny_choice  acc,none  ") and " ± " in lines[0]
    assert lines[1].startswith("tiny_choice  acc_norm,none  ")
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"]["tiny_choice"]["sample_len"] == 4 and "samples" not in saved
    samples = (out / "samples_tiny_choice.jsonl").read_text().splitlines()
    assert len(samples) == 4 and "acc" in json.loads(samples[0])


def _error_lines(result) -> list[str]:
    text = result.output  # click's runner interleaves stdout and stderr here
    assert "Traceback" not in text
    return [line for line in text.splitlines() if line.startswith("Error:")]


def test_an_unknown_task_names_the_closest_ones(llama_dir, tasks):
    result = invoke("eval", llama_dir, "--tasks", "tiny_mat", "--include-path", tasks, code=1)
    (line,) = _error_lines(result)
    assert line.startswith("Error: --tasks: 'tiny_mat' is not a task lm-eval knows (closest: tiny_math, ")


def test_a_hub_task_while_offline_is_one_line_naming_it_and_the_variable(llama_dir):
    result = invoke("eval", llama_dir, "--tasks", "gsm8k", code=1)
    (line,) = _error_lines(result)
    assert line.startswith("Error: task 'gsm8k' needs its data set from the Hugging Face hub, but HF_")
    assert "_OFFLINE is set" in line


def test_a_mask_for_another_model_is_refused_before_any_task_runs(tmp_path, llama_dir, tasks):
    other = tmp_path / "other.safetensors"
    invoke("baseline", "tiny-llama", "--kind", "random", "--out", other)
    result = invoke("eval", llama_dir, "--mask", other, "--tasks", "tiny_choice", "--include-path", tasks, code=1)
    assert len(_error_lines(result)) == 1


@pytest.mark.parametrize(
    "args, code",
    [((), 2), (("--data", "x.jsonl", "--tasks", "tiny_choice"), 2), (("--tasks", "tiny_choice", "--limit", "0"), 1)],
)
def test_data_or_tasks_and_bad_options(llama_dir, args, code):
    result = invoke("eval", llama_dir, *args, code=code)
    assert "Traceback" not in result.output


def test_gen_kwargs_read_as_lm_eval_writes_them():
    config = HarnessConfig.from_text("a, b", gen_kwargs="temperature=0,max_gen_toks=256,do_sample=false,until=END")
    assert config.tasks == ("a", "b")
    assert config.generation_settings() == {"temperature": 0, "max_gen_toks": 256, "do_sample": False, "until": "END"}
    assert HarnessConfig.from_text("a", gen_kwargs='{"top_p": 0.9}').generation_settings() == {"top_p": 0.9}
    with pytest.raises(ConfigError, match="'oops' is not key=value"):
        HarnessConfig.from_text("a", gen_kwargs="temperature=0,oops")
    with pytest.raises(ConfigError, match="--fewshot-as-multiturn needs --apply-chat-template"):
        HarnessConfig.from_text("a", fewshot_as_multiturn=True)


@pytest.mark.slow  # the protocol's 2-process rehearsal checks the same launched path in the default suite
def test_two_processes_split_the_examples_and_give_the_result_of_one(tmp_path, llama_dir, mask_path, tasks):
    args = [
        "eval",
        llama_dir,
        "--mask",
        mask_path,
        "--tasks",
        "tiny_math,tiny_choice",
        "--include-path",
        tasks,
        "--batch-size",
        "4",
        "--json",
    ]
    one = json.loads(invoke(*args).stdout)
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "mftlab.cli.main",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    two = json.loads(launched.stdout[launched.stdout.index("{") :])
    assert _metrics(two) == _metrics(one)
    assert two["results"]["tiny_math"]["sample_len"] == 12


def test_per_example_rows_come_from_lm_evals_samples_and_average_to_its_metrics(tmp_path, llama_dir, tasks):
    path = tmp_path / "rows.jsonl"
    args = ["eval", llama_dir, "--tasks", "tiny_math,tiny_choice", "--include-path", tasks, "--batch-size", "4"]
    result = json.loads(invoke(*args, "--per-example", path, "--json", "--output-path", tmp_path / "res").stdout)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(24)) and rows[0]["id"] == "tiny_math/0"
    for task, metric in (("tiny_math", "exact_match"), ("tiny_choice", "acc")):
        mine = [r for r in rows if r["task"] == task]
        assert len(mine) == 12 and {r["scored_by"] for r in mine} == {f"lm-eval:{metric}"}
        assert sum(r["correct"] for r in mine) / 12 == pytest.approx(result["results"][task][f"{metric},none"])
    assert not list((tmp_path / "res").glob("samples_*"))  # per-example rows only: no --log-samples files
    same = invoke("compare-evals", path, path)
    assert "B - A  +0.00 points" in same.output
