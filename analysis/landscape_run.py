"""A landscape run from model names to saved results, as `mftlab landscape` does it on every process.

    request = LandscapeRequest(models=("runs/fft",), data="train.jsonl", eval_data="test.jsonl", out="runs/ls")
    run = run_landscape(request, LandscapeConfig(), progress=report)  # a LandscapeRun on process 0, else None

`run_landscape` checks the request, joins the launch's process group (`mftlab.models.device.join_launch`:
under torchrun the processes split the grid), owns `out` (process 0; the others wait), loads the first
model and the two data subsets, computes the landscape (`analysis.landscape.loss_landscape`) with the group's faults as
one-line errors, and adds the peak memory of every process to landscape.json. A model is a folder,
preset or hub id, or FOLDER::MASK_FILE for a model with a mask applied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from mftlab.analysis.landscape import LandscapeConfig, Progress, loss_landscape
from mftlab.analysis.landscape_data import EvalData, load_eval_data
from mftlab.analysis.landscape_result import LandscapeResult
from mftlab.errors import ConfigError
from mftlab.files.folder_lock import hold_folder
from mftlab.files.results import add_to_result
from mftlab.mask.maskfile import load_mask
from mftlab.mft.apply import load_masked
from mftlab.models.device import Launch, join_launch, resolve_device
from mftlab.options_meta import field_default
from mftlab.training.config import TrainConfig
from mftlab.training.dist_faults import distributed_faults
from mftlab.training.peak_memory import peak_memory

MASK_SEPARATOR = "::"


def split_model(text: str) -> tuple[str, str | None]:
    """'FOLDER::MASK_FILE' -> (FOLDER, MASK_FILE); a plain model name -> (name, None)."""
    if MASK_SEPARATOR in text:
        folder, mask = text.split(MASK_SEPARATOR, 1)
        if not folder or not mask:
            raise ConfigError(f"--model '{text}': write FOLDER::MASK_FILE, e.g. runs/fft::runs/mft/mask.safetensors")
        return folder, mask
    return text, None


@dataclass(frozen=True)
class LandscapeRequest:
    """What a landscape is computed on and where it goes (what it computes is a `LandscapeConfig`)."""

    models: tuple[str, ...]  # the first is evaluated; see `loss_landscape` for what the others are
    data: str  # its first `max_tokens` label tokens give the train loss
    eval_data: str  # ... and the test loss
    out: str
    labels: tuple[str, ...] | None = None  # one marker label per model
    mask_directions: str | None = None  # a mask file: random directions are zero where it masks
    max_tokens: int = 4096
    max_seq_len: int = field_default(TrainConfig, "max_seq_len")
    batch_size: int = 8
    resume: bool = False
    force: bool = False
    dist_timeout: float = field_default(TrainConfig, "dist_timeout")
    device: str = "auto"
    dtype: str = "auto"
    gguf_file: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self):
        if self.labels is not None and len(self.labels) != len(self.models):
            raise ConfigError(
                f"--labels has {len(self.labels)} labels for {len(self.models)} --model; give one per model"
            )
        for path in (self.data, self.eval_data):
            if (os.path.sep in path or os.path.splitext(path)[1]) and not os.path.exists(path):
                raise ConfigError(f"data '{path}' does not exist; check --data / --eval-data")

    def info(self) -> dict:
        """Where the run's inputs came from, written into landscape.json."""
        return {
            "sources": list(self.models),
            "mask_directions_file": self.mask_directions,
            "data_sources": {"train": self.data, "test": self.eval_data},
            "max_tokens": self.max_tokens,
            "max_seq_len": self.max_seq_len,
            "batch_size": self.batch_size,
        }


@dataclass
class LandscapeRun:
    """What process 0 gets back: the result and the files written (results, then what `draw` wrote)."""

    result: LandscapeResult
    written: list[str]


def _loader(text: str, request: LandscapeRequest, device) -> Callable:
    """A zero-argument loader of the model `text` names (FOLDER::MASK_FILE applies a mask)."""

    def load():
        source, mask_path = split_model(text)
        loaded, _ = load_masked(
            source,
            mask_path,  # a bad mask fails before any weights are loaded
            force=request.force,
            dtype=request.dtype,
            gguf_file=request.gguf_file,
            trust_remote_code=request.trust_remote_code,
            device=device,
        )
        return loaded

    return load


def _load_inputs(request: LandscapeRequest, device) -> tuple[list, EvalData, EvalData]:
    """The first model loaded, loaders for the others (each loaded when the landscape needs it), and the
    train and test subsets tokenised with the first model's tokenizer."""
    loaders = [_loader(text, request, device) for text in request.models]
    first = loaders[0]()
    train, test = (
        load_eval_data(
            source,
            first.tokenizer,
            max_seq_len=request.max_seq_len,
            batch_size=request.batch_size,
            max_tokens=request.max_tokens,
            device=device,
        )
        for source in (request.data, request.eval_data)
    )
    return [first.model] + [(lambda load=load: load().model) for load in loaders[1:]], train, test


def _run_in_folder(
    request: LandscapeRequest, config: LandscapeConfig, mask, launch: Launch, *, progress, draw
) -> LandscapeRun | None:
    models, train, test = _load_inputs(request, launch.device)
    with distributed_faults(request.dist_timeout):
        result = loss_landscape(
            models,
            train,
            test,
            config,
            request.out,
            labels=list(request.labels) if request.labels else None,
            mask_directions=mask,
            force=request.force,
            info=request.info(),
            resume=request.resume,
            rank=launch.rank,
            world_size=launch.world_size,
            barrier=launch.barrier,
            progress=progress if launch.is_main else None,
        )
        peaks = peak_memory(launch.device, distributed=launch.distributed)  # every process takes part
    if not launch.is_main:
        return None
    add_to_result(request.out, "landscape", peaks)
    written = result.save(request.out)  # already there: only their paths
    if draw is not None:
        written += draw(request.out)
    return LandscapeRun(result, written)


def run_landscape(
    request: LandscapeRequest,
    config: LandscapeConfig,
    *,
    progress: Progress | None = None,
    draw: Callable[[str], list[str]] | None = None,
) -> LandscapeRun | None:
    """Compute the landscape `config` describes for `request` and save it in `request.out`.

    Every process of a launch calls this; the grid's points are dealt over them. `progress` gets
    process 0's progress events (see `compute_landscape`); `draw(out)`, called on process 0 while it
    still owns `out`, writes figures of the saved result and returns their paths. Returns the run on
    process 0, None on the others.
    """
    mask = load_mask(request.mask_directions) if request.mask_directions else None  # checked before any launch
    # Checked here rather than in LandscapeRequest so that a bad mask file is still the error reported first.
    if not request.dist_timeout > 0:
        raise ConfigError.for_option(
            "dist_timeout", request.dist_timeout, "must be positive seconds (default 1800 = 30 minutes)"
        )
    launch = join_launch(resolve_device(request.device), timeout_s=request.dist_timeout)
    # Process 0 owns `out` from before any check of it to the end (figures included); the others wait.
    with hold_folder(request.out):
        return _run_in_folder(request, config, mask, launch, progress=progress, draw=draw)
