"""The README's "Python API" and "MFT in your own trainer" code blocks run as written (offline, tiny models)."""

import json
import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
SECTIONS = ("Python API", "MFT in your own trainer", "Is the gain real?")


def _blocks(section: str) -> list[str]:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """The Trainer example leaves accelerate's process-wide state behind; later tests start clean."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("section", SECTIONS)
def test_readme_section_runs(section, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, n in (("train.jsonl", 8), ("test.jsonl", 4)):
        with open(name, "w") as f:
            for i in range(n):
                f.write(json.dumps({"prompt": f"{i}+3=", "completion": str(i + 3)}) + "\n")
    if section == "Python API":  # the task YAML the README shows under "Evaluate on standard benchmarks"
        os.makedirs("tasks")
        with open(README, encoding="utf-8") as f:
            text = f.read()
        yaml_block = re.search(r"```yaml\n(task: my_task\n.*?)```", text, flags=re.S).group(1)
        with open("tasks/my_task.yaml", "w") as f:
            f.write(yaml_block)
    if section == "Is the gain real?":  # the two per-example files its commands write, made by `mftlab eval`
        from click.testing import CliRunner

        from mftlab.cli.main import main

        for name, extra in (("fft.jsonl", []), ("mft.jsonl", ["--data-fraction", "1.0", "--batch-size", "2"])):
            args = ["eval", "micro-llama", "--data", "test.jsonl", "--per-example", name, "--no-generate", *extra]
            assert CliRunner().invoke(main, args).exit_code == 0
    blocks = _blocks(section)
    assert blocks, f"no python blocks under '## {section}'"
    namespace = {}
    for code in blocks:  # the blocks of one section share names, as a reader running them in order would
        exec(compile(code, f"README.md ({section})", "exec"), namespace)
    if section == "Python API":
        assert os.path.exists("run/mask.safetensors") and any(p.endswith(".png") for p in namespace["figures"])
        assert 0.0 <= namespace["exact"] <= 1.0 and namespace["scores"]["mftlab"]["mask"] is None
    elif section == "Is the gain real?":
        assert namespace["gain"].examples == 4 and any(p.endswith("forest_plot.png") for p in namespace["figures"])
    else:
        assert os.path.exists("mask.safetensors") and os.path.exists("hf-run/mask.safetensors")
        assert abs(namespace["mask"].mask_ratio - 0.1) < 1e-3
