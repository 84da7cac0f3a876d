"""`mftlab demo`: the protocol (recipes.protocol) with the built-in tiny benchmark's config.

The demo writes the tiny benchmark's data (recipes.tinybench) and its protocol config to
`OUT/protocol.yaml` (paths relative to OUT, so `mftlab protocol OUT/protocol.yaml` reruns it,
and a user can copy it as a starting point), then runs the same protocol as `mftlab protocol`.
The built-in config's values are the demo's settings: the backbone pre-trained from a preset,
training lengths scaled to the benchmark's sizes (smaller with --quick).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import yaml

from mftlab import __version__
from mftlab.errors import ConfigError
from mftlab.files.atomic import write_text_atomic
from mftlab.mft.masking import SCORE_INITS, SelectionConfig
from mftlab.mft.selection import check_ratio
from mftlab.mft.targeting import parse_layers
from mftlab.options_meta import doc, like
from mftlab.recipes import steps
from mftlab.recipes.methods import METHODS
from mftlab.recipes.protocol import ProtocolProgress, planned_steps, run_protocol, runs_lora
from mftlab.recipes.protocol_config import (
    DomainData,
    Evaluation,
    Landscape,
    Pretraining,
    ProtocolConfig,
    Training,
    config_to_dict,
)
from mftlab.recipes.protocol_plan import plan_protocol
from mftlab.recipes.tinybench import DOMAINS, SplitSizes, pretraining_records, write_benchmark, write_jsonl

CONFIG_FILE = "protocol.yaml"


@dataclass(frozen=True)
class DemoConfig:
    out: str = field(
        metadata=doc("Folder for every run, result, figure and the report (re-running reuses finished steps).")
    )
    seed: int = field(default=0, metadata=doc("First seed."))
    seeds: int = field(default=1, metadata=doc("Number of seeds (mean ± std in the tables)."))
    quick: bool = field(
        default=False, metadata=doc("Smaller data, fewer steps and a coarser landscape (about a minute).")
    )
    layers: str = field(
        default="2-3",
        metadata=doc(  # the backbone has 4 layers
            "The local layer group MFT trains."
        ),
    )
    mask_ratio: float = like(SelectionConfig, "mask_ratio")
    domains: tuple[str, ...] = DOMAINS
    mft_inits: tuple[str, ...] = field(
        default=("random", "magnitude"),
        metadata=doc(  # MFT's grid, chosen on validation
            "MFT variants: score initialisations (x --mft-score-lrs); the best on validation is MFT."
        ),
    )
    mft_score_lrs: tuple[float, ...] = field(
        default=(1e-3, 1e-2), metadata=doc("MFT variants: score learning rates (x --mft-inits).")
    )
    random_seeds: int = field(
        default=3, metadata=doc("Draws of the random-mask baseline per domain and seed (mean ± std in the tables).")
    )
    mftlab_version: str = __version__

    def __post_init__(self):
        if not (isinstance(self.seeds, int) and 1 <= self.seeds <= 20):
            raise ConfigError(f"--seeds {self.seeds} is outside 1..20; use e.g. 3 for mean and spread")
        check_ratio(self.mask_ratio)
        parse_layers(self.layers)
        unknown = [d for d in self.domains if d not in DOMAINS]
        if unknown:
            raise ConfigError(f"domain '{unknown[0]}' is unknown; choose from {', '.join(DOMAINS)}")
        if not self.mft_inits or any(i not in SCORE_INITS for i in self.mft_inits):
            raise ConfigError(
                f"--mft-inits {','.join(self.mft_inits) or '(empty)'} must name one or more of {', '.join(SCORE_INITS)}"
            )
        if not self.mft_score_lrs or not all(lr > 0 for lr in self.mft_score_lrs):
            raise ConfigError(
                f"--mft-score-lrs {','.join(f'{lr:g}' for lr in self.mft_score_lrs) or '(empty)'} must "
                "be one or more positive rates, e.g. 1e-3,1e-2"
            )
        if not (isinstance(self.random_seeds, int) and 1 <= self.random_seeds <= 20):
            raise ConfigError(f"--random-seeds {self.random_seeds} is outside 1..20; use e.g. 3 for mean and spread")

    @property
    def mft_variants(self) -> list[tuple[str, float]]:
        """(score init, score learning rate) of every MFT variant, in grid order."""
        return [(init, lr) for init in self.mft_inits for lr in self.mft_score_lrs]

    @property
    def sizes(self) -> SplitSizes:
        return SplitSizes(100, 40, 60) if self.quick else SplitSizes(200, 100, 200)

    @property
    def backbone(self) -> str:
        """Preset the backbone is pre-trained from: 0.76M parameters, or 0.2M for --quick."""
        return "micro-llama" if self.quick else "tiny-llama"

    @property
    def pretrain_per_domain(self) -> int:
        return 150 if self.quick else 600


def builtin_config(config: DemoConfig, paths: dict, tasks: str | None = None) -> ProtocolConfig:
    """The tiny benchmark's protocol config for the data in `paths` (as `write_data` returns them); with
    `tasks` (the folder `write_tasks` wrote) every domain is also scored through lm-eval."""
    quick = config.quick
    named = {d: (task_name(d),) if tasks else () for d in config.domains}
    return ProtocolConfig(
        backbone=config.backbone,
        domains={d: DomainData(**paths[d], name=d, tasks=named[d]) for d in config.domains},
        evaluation=Evaluation(include_path=tasks, batch_size=64),
        layers=config.layers,
        pretrain=Pretraining(
            data=paths["pretrain"],
            lr=3e-3,
            epochs=2.0 if quick else 3.0,
            batch_size=32,
            max_seq_len=128,
            warmup_ratio=0.05,
            log_every=20,
        ),
        methods=METHODS,
        mask_ratio=config.mask_ratio,
        seed=config.seed,
        seeds=config.seeds,
        mft_inits=config.mft_inits,
        mft_score_lrs=config.mft_score_lrs,
        random_seeds=config.random_seeds,
        training=Training(fft_epochs=6.0, mft_epochs=3.0, lora_epochs=4.0, eval_every=8) if quick else Training(),
        landscape=Landscape(grid=(5, 5) if quick else (9, 9)),
        title="Tiny benchmark",
        data_note="quick sizes" if quick else "default sizes",
    )


def write_data(config: DemoConfig) -> dict:
    """Write (or reuse) the benchmark's splits and the pre-training mixture; returns their paths."""
    folder = os.path.join(config.out, "data")
    done = steps.cached(folder)
    if done is not None:
        return done
    paths = write_benchmark(folder, config.seed, config.sizes)
    paths["pretrain"] = write_jsonl(
        pretraining_records(config.pretrain_per_domain, config.seed), os.path.join(folder, "pretrain.jsonl")
    )
    return steps.finish(folder, paths)


def task_name(domain: str) -> str:
    return f"tinybench_{domain}"


def write_tasks(config: DemoConfig, paths: dict) -> str:
    """Each domain's test set as an lm-eval exact-match task, in `OUT/tasks/` (what the benchmark table runs).

    Generation stops at end-of-text, and at two tokens past the longest reference (a wrong answer needs no
    more), so lm-eval's exact match is the built-in teacher-forced whole-answer accuracy.
    """
    from mftlab.harness.local_tasks import exact_match_task, write_task
    from mftlab.training.data import read_rows

    folder = os.path.join(config.out, "tasks")
    for domain in config.domains:
        test = paths[domain]["test"]
        longest = max(len(str(row.get("completion", ""))) for row, _ in read_rows(test))
        write_task(folder, exact_match_task(task_name(domain), test, max_gen_toks=longest + 2))
    return folder


def write_config(protocol: ProtocolConfig, path: str) -> str:
    """`protocol` as YAML at `path`, file paths relative to its folder (what `mftlab protocol` reads)."""
    values = config_to_dict(protocol, relative_to=os.path.dirname(os.path.abspath(path)))
    text = (
        "# The built-in tiny benchmark's protocol config, written by `mftlab demo`.\n"
        "# Rerun it with `mftlab protocol " + CONFIG_FILE + " --out OTHER`, or copy it for your own model and data.\n"
    )
    write_text_atomic(path, text + yaml.safe_dump(values, sort_keys=False))
    return path


def run_demo(config: DemoConfig, progress: Callable[[object], None] | None = None) -> dict:
    """Write the benchmark's data and `OUT/protocol.yaml`, then run the protocol; returns `OUT/demo.json`'s index."""
    os.makedirs(config.out, exist_ok=True)
    paths = write_data(config)
    from mftlab.harness.run import lm_eval_available

    # The benchmark table goes through lm-eval when it is installed (mftlab[eval]); without it, it is left out.
    protocol = builtin_config(config, paths, write_tasks(config, paths) if lm_eval_available() else None)
    if progress:
        progress(
            ProtocolProgress(
                1,
                1 + planned_steps(protocol),
                "writing the tiny benchmark (math, code, instruct) and the pre-training mixture",
            )
        )
    write_config(protocol, os.path.join(config.out, CONFIG_FILE))
    schedule = plan_protocol(protocol, config.out, runs_lora(protocol)).schedule()  # where the ETA starts
    return run_protocol(protocol, config.out, progress, done_before=1, command="demo", schedule=schedule)
