"""What `mftlab eval --tasks` asks lm-evaluation-harness for: its options, under lm-eval's own names.

A `HarnessConfig` is validated here (the CLI's options are made from its fields, mftlab.options_meta);
`mftlab.harness.run` hands it to `lm_eval.simple_evaluate` with the masked model in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from mftlab.errors import ConfigError
from mftlab.options_meta import doc


@dataclass(frozen=True)
class HarnessConfig:
    tasks: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "lm-evaluation-harness tasks, comma-separated (e.g. gsm8k,minerva_math); runs them on the model "
            "in memory, with the mask applied, instead of --data.",
            type=str,
            text="",
        ),
    )
    num_fewshot: int | None = field(
        default=None, metadata=doc("Few-shot examples per prompt (lm-eval's --num_fewshot).", type=int)
    )
    limit: float | None = field(
        default=None,
        metadata=doc(
            "Examples per task: a count, or a fraction below 1 (lm-eval's --limit; for tests only).", type=float
        ),
    )
    batch_size: int = 16
    apply_chat_template: bool = field(
        default=False, metadata=doc("Wrap prompts in the tokenizer's chat template (lm-eval's --apply_chat_template).")
    )
    fewshot_as_multiturn: bool = field(
        default=False,
        metadata=doc("Few-shot examples as a multi-turn chat (needs --apply-chat-template; lm-eval's flag)."),
    )
    gen_kwargs: str | None = field(
        default=None,
        metadata=doc("Generation settings for generate_until tasks, e.g. temperature=0,max_gen_toks=256.", type=str),
    )
    include_path: str | None = field(
        default=None, metadata=doc("Folder of your own task YAMLs (lm-eval's --include_path).", type=str)
    )
    log_samples: bool = field(
        default=False, metadata=doc("Keep every example's prompt, response and score (written with --output-path).")
    )
    output_path: str | None = field(
        default=None,
        metadata=doc("Write the results JSON here (a .json file, or a folder for results.json and samples).", type=str),
    )
    confirm_run_unsafe_code: bool = field(
        default=False,
        metadata=doc("Allow tasks that execute generated code (HumanEval; also set HF_ALLOW_CODE_EVAL=1)."),
    )

    def __post_init__(self):
        if not self.tasks or any(not t.strip() for t in self.tasks):
            raise ConfigError("--tasks is empty; name one or more lm-eval tasks, e.g. --tasks gsm8k")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise ConfigError(f"--num-fewshot {self.num_fewshot} must be 0 or more")
        if self.limit is not None and not self.limit > 0:
            raise ConfigError(f"--limit {self.limit:g} must be positive: a count, or a fraction below 1")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size} must be at least 1")
        if self.fewshot_as_multiturn and not self.apply_chat_template:
            raise ConfigError("--fewshot-as-multiturn needs --apply-chat-template (few-shot turns are chat turns)")
        if self.include_path is not None and not os.path.isdir(self.include_path):
            raise ConfigError(f"--include-path '{self.include_path}' is not a folder; give the folder of task YAMLs")
        self.generation_settings()

    @classmethod
    def from_text(cls, tasks: str, **values) -> "HarnessConfig":
        return cls(tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), **values)

    def generation_settings(self) -> dict | None:
        """`gen_kwargs` as a dict (lm-eval's `key=value,...` text, or JSON)."""
        text = (self.gen_kwargs or "").strip()
        if not text:
            return None
        if text.startswith("{"):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(
                    f"--gen-kwargs '{text}' is not valid JSON; write key=value,... or a JSON object"
                ) from None
        settings = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    f"--gen-kwargs '{text}': '{part}' is not key=value; write e.g. temperature=0,max_gen_toks=256"
                )
            settings[key.strip()] = _value(value.strip())
        return settings


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
