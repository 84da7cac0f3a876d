"""The README's "The protocol on 8 GPUs" dry run: `mftlab protocol docs/protocol-llama2-7b.yaml --dry-run`.

The config names GSM8K files this repository does not ship (and nothing may be downloaded), so this
writes placeholder files with GSM8K's record counts (6,973 training problems after holding out 500
for validation, 1,319 test problems: the plan reads only the counts) beside a copy of the config in
a temporary folder, runs the dry run and prints its output and wall time. No weights are loaded:
the backbone's shape is Llama-2-7b-hf's public config (mftlab.models.shapes).

    .venv/bin/python bench/protocol_7b_plan.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "docs", "protocol-llama2-7b.yaml")
COUNTS = {"gsm8k-train": 6973, "gsm8k-validation": 500, "gsm8k-test": 1319}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "data"))
        for name, n in COUNTS.items():
            with open(os.path.join(tmp, "data", f"{name}.jsonl"), "w", encoding="utf-8") as f:
                record = json.dumps({"prompt": "placeholder question", "completion": "placeholder answer"})
                f.write((record + "\n") * n)
        shutil.copy(CONFIG, os.path.join(tmp, "protocol-llama2-7b.yaml"))
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mftlab.cli.main",
                "protocol",
                "protocol-llama2-7b.yaml",
                "--out",
                "llama2-7b-protocol",
                "--dry-run",
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
        sys.stdout.write(result.stdout.replace(tmp + os.sep, "").replace(torchrun, "torchrun"))
        sys.stderr.write(result.stderr)
        print(f"# dry run: exit {result.returncode} in {seconds:.1f} s (wall, including Python start-up)")
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
