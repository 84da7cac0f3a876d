"""lm-eval task YAMLs over local jsonl files: what the demo ships and what tests and users start from.

`exact_match_task(name, data_file)` is a `generate_until` task: the record's `prompt` as the prompt,
greedy generation until the end-of-text token, scored by exact match against the record's
`completion`. For records whose completion ends at end-of-text (every record mftlab trains on),
this is the same number as `mftlab eval`'s teacher-forced whole-answer accuracy.
"""

from __future__ import annotations

import os

import yaml

from mftlab.files.atomic import write_text_atomic


def exact_match_task(name: str, data_file: str, max_gen_toks: int = 32) -> dict:
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": os.path.abspath(data_file)}},
        "test_split": "test",
        "output_type": "generate_until",
        # Field names, not "{{completion}}" templates: lm-eval reads a rendered target that looks like a
        # Python list ("[1,2]") as a list of references, which broke exact match on the code domain.
        "doc_to_text": "prompt",
        "doc_to_target": "completion",
        "generation_kwargs": {"until": [], "max_gen_toks": max_gen_toks, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }


def write_task(folder: str, task: dict) -> str:
    """`task` as `folder/NAME.yaml` (the folder is what --include-path / `evaluation.include_path` name)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{task['task']}.yaml")
    write_text_atomic(path, yaml.safe_dump(task, sort_keys=False))
    return path
