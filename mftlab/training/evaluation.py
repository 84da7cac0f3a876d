"""The one evaluation function: token-weighted loss over answer tokens, perplexity, token
accuracy, and generation exact-match. Training, `mftlab eval`, sweeps and landscapes all use it.

The loss is the mean over *label tokens* of the whole data (sum of token losses / number of
label tokens), never a mean of per-batch means, accumulated in float64 on the host.
With `distributed=True` (every process of a launch calls it) the batches are dealt out over the
processes and the sums are added up: the same numbers as one process, in 1/world of the time.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import torch

from mftlab.models.tokenizer import padding_id
from mftlab.training.chunked_nll import next_token_targets, token_nll, token_nll_and_hits
from mftlab.training.data import IGNORE_INDEX, Example


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # (B, T) int64, right-padded
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), IGNORE_INDEX on prompt and padding

    def to(self, device) -> "TokenBatch":
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))

    @property
    def num_label_tokens(self) -> int:
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


def collate(examples: list[Example], pad_id: int) -> TokenBatch:
    """Right-pad a list of examples into one batch."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        attention[row, :n] = 1
    return TokenBatch(ids, attention, labels)


def length_groups(examples: list[Example], batch_size: int) -> list[list[int]]:
    """Example indices per batch: grouped by length (stable order) so padding stays small."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def make_batches(examples: list[Example], batch_size: int, pad_id: int, device="cpu") -> list[TokenBatch]:
    """Tokenised data as fixed batches, moved to `device` once (kept there for repeated passes).

    Examples are grouped by length (`length_groups`) so padding stays small; the result does not
    depend on the grouping because the loss is token-weighted.
    """
    return [collate([examples[i] for i in group], pad_id).to(device) for group in length_groups(examples, batch_size)]


@dataclass
class LossSums:
    """Additive loss statistics, so partial results (processes, grid shards) can be summed."""

    nll: float = 0.0  # sum of token negative log-likelihoods (nats)
    tokens: int = 0  # number of label tokens
    correct: int = 0  # label tokens predicted exactly by argmax
    answers: int = 0  # examples with at least one label token
    answers_correct: int = 0  # examples whose every label token is the argmax (see answer_accuracy)

    def __add__(self, other: "LossSums") -> "LossSums":
        return LossSums(
            self.nll + other.nll,
            self.tokens + other.tokens,
            self.correct + other.correct,
            self.answers + other.answers,
            self.answers_correct + other.answers_correct,
        )

    @property
    def loss(self) -> float:
        return self.nll / self.tokens if self.tokens else float("nan")

    @property
    def answer_accuracy(self) -> float:
        """Fraction of answers reproduced exactly under teacher forcing.

        For answers that end with the end-of-text token this equals greedy-decoding exact match:
        greedy decoding emits the reference iff every reference token is the argmax given the
        reference prefix, which is what teacher forcing checks, at the cost of one forward pass.
        """
        return self.answers_correct / self.answers if self.answers else float("nan")


def _logits(model: torch.nn.Module, batch: TokenBatch) -> torch.Tensor:
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # (B, T, V)


def training_nll(model: torch.nn.Module, batch: TokenBatch) -> torch.Tensor:
    """Summed fp32 NLL (nats) over the label tokens of one batch, differentiable: the training loss.

    No argmax and no host synchronisation; the log-softmax runs in fp32 one chunk of rows at a
    time (see `chunked_nll`), so no fp32 copy of the (B, T, V) logits is made, nor kept for the
    backward.
    """
    return token_nll(_logits(model, batch), next_token_targets(batch.labels)).sum()


def _batch_stats(model: torch.nn.Module, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(5,) float64 on the batch's device: summed fp32 NLL, label tokens, argmax-correct tokens,
    answers, fully correct answers; and the same per example, (B, 4) float64: NLL, label tokens,
    correct tokens, answer fully correct. Read back by the caller, so a batch costs no host sync."""
    targets = next_token_targets(batch.labels)  # (B, T)
    nll, hit = token_nll_and_hits(_logits(model, batch), targets)  # (B, T) each
    valid = targets != IGNORE_INDEX
    has_answer = valid.any(dim=1)  # (B,)
    answer_right = (hit | ~valid).all(dim=1) & has_answer
    counts = torch.stack([valid.sum(), hit.sum(), has_answer.sum(), answer_right.sum()])  # (4,) int64
    rows = torch.stack([nll.sum(dim=1).double(), valid.sum(1).double(), hit.sum(1).double(), answer_right.double()], 1)
    return torch.cat([nll.sum().double()[None], counts.double()]), rows


def batch_loss_sums(model: torch.nn.Module, batch: TokenBatch) -> tuple[torch.Tensor, int, int]:
    """(summed fp32 NLL as a tensor, label-token count, correct count) for one batch.

    Differentiable in the NLL; reads the counts back to the host (training uses `training_nll`).
    """
    logits = _logits(model, batch)  # (B, T, V)
    targets = next_token_targets(batch.labels)  # (B, T)
    nll = token_nll(logits, targets).sum()
    valid = targets != IGNORE_INDEX
    # argmax of the model-dtype logits: the fp32 upcast is exact, so it picks the same token
    counts = torch.stack([valid.sum(), ((logits.detach().argmax(-1) == targets) & valid).sum()]).tolist()
    return nll, counts[0], counts[1]


@torch.no_grad()
def _scored(
    model: torch.nn.Module, batches: list[TokenBatch], on_batch=None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`_batch_stats` of every batch (model put in eval mode, then back); `on_batch(rows)` after each."""
    was_training = model.training
    model.eval()
    stats = []
    for batch in batches:
        stats.append(_batch_stats(model, batch))
        if on_batch is not None:
            on_batch(batch.input_ids.shape[0])
    model.train(was_training)
    return stats


def _total(stats: list[tuple[torch.Tensor, torch.Tensor]]) -> LossSums:
    """The per-batch sums added up in float64, in batch order (one host sync in all)."""
    total = LossSums()
    for nll, tokens, correct, answers, answers_correct in torch.stack([s for s, _ in stats]).tolist() if stats else []:
        total = total + LossSums(nll, int(tokens), int(correct), int(answers), int(answers_correct))
    return total


def loss_sums(model: torch.nn.Module, batches: list[TokenBatch]) -> LossSums:
    """Token-weighted loss statistics of `model` over `batches` (model put in eval mode).

    The batches' statistics stay on the device until the end of the pass (one host sync in all);
    the per-batch fp32 NLL sums are then added up in float64, in batch order.
    """
    return _total(_scored(model, batches))


# -- generation exact-match -------------------------------------------------------------------
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def normalize_answer(text: str, reference: str | None = None) -> str:
    """Canonical form for exact-match: first line, trimmed, spaces collapsed, no trailing period.

    When the reference is a number, the last number in the prediction's first line is used
    (so "The answer is 42." matches "42").
    """
    line = text.strip().split("\n", 1)[0] if text.strip() else ""
    line = re.sub(r"\s+", " ", line).strip().rstrip(".").strip()
    if reference is not None and _NUMBER.fullmatch(reference.strip()):
        numbers = _NUMBER.findall(line)
        return numbers[-1] if numbers else line
    return line


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    examples: list[Example],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 32,
    device="cpu",
    on_batch=None,
) -> list[str]:
    """Greedy completions of each example's prompt (left-padded batches), decoded without specials;
    `on_batch(answers_so_far)` after each batch."""
    pad_id = padding_id(tokenizer)
    outputs = []
    model.eval()
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        width = max(len(e.prompt_ids) for e in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, e in enumerate(chunk):
            ids[row, width - len(e.prompt_ids) :] = torch.tensor(e.prompt_ids, dtype=torch.long)
            attention[row, width - len(e.prompt_ids) :] = 1
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row in generated[:, width:]:
            outputs.append(tokenizer.decode(row, skip_special_tokens=True))
        if on_batch is not None:
            on_batch(len(outputs))
    return outputs


@dataclass
class EvalResult:
    loss: float
    perplexity: float
    token_accuracy: float
    tokens: int
    examples: int
    exact_match: float | None = None  # generation exact-match in [0, 1], when references exist
    answer_accuracy: float | None = None  # teacher-forced whole-answer accuracy (see LossSums)
    per_example: list[dict] | None = field(default=None, repr=False)  # with per_example=True: see example_rows

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "per_example"}


def _process() -> tuple[int, int]:
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _shared_pass(
    model, examples: list[Example], *, batch_size: int, pad_id: int, device, rank: int, world: int, on_batch=None
) -> tuple[LossSums, torch.Tensor]:
    """Process `rank` of `world` evaluates every world-th batch; all run the same number of forward passes (a
    sharded model gathers its weights in each), then the sums are added up. Also returns the
    (N, 4) per-example table (NLL, tokens, correct tokens, answer correct) in example order."""
    import torch.distributed as dist

    groups = length_groups(examples, batch_size)
    batches = [collate([examples[i] for i in g], pad_id) for g in groups]
    shared = None if on_batch is None else (lambda rows: on_batch(rows * world))  # every process does as much
    stats = _scored(model, [b.to(device) for b in batches[rank::world]], shared)
    for _ in range(-(-len(batches) // world) - len(batches[rank::world])):  # keeps the processes in step
        _scored(model, [batches[0].to(device)])
    sums = _total(stats)
    table = torch.zeros((len(examples), 4), dtype=torch.float64, device=device)
    for group, (_, rows) in zip(groups[rank::world], stats):
        table[torch.tensor(group, device=device)] = rows
    total = torch.tensor(
        [sums.nll, sums.tokens, sums.correct, sums.answers, sums.answers_correct], dtype=torch.float64, device=device
    )
    if world > 1:
        dist.all_reduce(total)
        dist.all_reduce(table)  # every example's row comes from exactly one process
    nll, tokens, correct, answers, answers_correct = total.tolist()
    return LossSums(nll, int(tokens), int(correct), int(answers), int(answers_correct)), table.cpu()


def _shared_predictions(predictions: list[str], world: int) -> list[str]:
    """Every process's predictions (each generated every world-th example) back in example order."""
    if world == 1:
        return predictions
    import torch.distributed as dist

    parts = [None] * world
    dist.all_gather_object(parts, predictions)
    merged = [None] * sum(len(p) for p in parts)
    for rank, part in enumerate(parts):
        merged[rank::world] = part
    return merged


def example_rows(examples: list[Example], table: torch.Tensor, predictions: dict[int, str]) -> list[dict]:
    """One dict per example (the lines of `mftlab eval --per-example`), in the data's order.

    index, id (the record's `id` or None), key (hash of its text), tokens and loss_sum (nats over its
    answer tokens), loss (their mean), answer_correct (every answer token is the argmax under teacher
    forcing), correct (exact match: by generation where a prediction was made, else teacher-forced)
    and scored_by; with generation also the normalised prediction and reference.
    """
    rows = []
    for index, (example, (nll, tokens, _, right)) in enumerate(zip(examples, table.tolist())):
        row = {
            "index": index,
            "id": example.id,
            "key": example.key,
            "tokens": int(tokens),
            "loss_sum": nll,
            "loss": nll / tokens if tokens else None,
            "answer_correct": int(right),
        }
        if index in predictions:
            reference = normalize_answer(example.reference, example.reference)
            predicted = normalize_answer(predictions[index], example.reference)
            row.update(
                scored_by="generation", correct=int(predicted == reference), prediction=predicted, reference=reference
            )
        else:
            row.update(scored_by="teacher-forcing", correct=int(right))
        rows.append(row)
    return rows


def evaluate(
    model,
    tokenizer,
    examples: list[Example],
    batch_size: int = 16,
    *,
    generate: bool = True,
    max_new_tokens: int = 32,
    device="cpu",
    distributed: bool = False,
    per_example: bool = False,
    progress=None,
) -> EvalResult:
    """Loss, perplexity, token accuracy and (when references exist and `generate`) exact-match.

    `distributed`: every process of the launch calls this with the same examples; each does its
    share (generation must not be combined with a sharded model: its passes differ per process).
    `per_example`: also return one row per example (`example_rows`), on every process.
    `progress(stage, done, total)`: called as the examples are scored (stage "scored") and as answers are
    generated ("generated"; the answers of every process, under a launch).
    """
    pad_id = padding_id(tokenizer)
    rank, world = _process() if distributed else (0, 1)
    counter = {"done": 0}

    def scored(rows: int) -> None:
        counter["done"] = min(counter["done"] + rows, len(examples))
        progress("scored", counter["done"], len(examples))

    sums, table = _shared_pass(
        model,
        examples,
        batch_size=batch_size,
        pad_id=pad_id,
        device=device,
        rank=rank,
        world=world,
        on_batch=scored if progress is not None else None,
    )
    exact, predictions = None, {}
    with_ref = [i for i, e in enumerate(examples) if e.reference is not None and e.prompt_ids]
    if generate and with_ref:
        mine = with_ref[rank::world]
        made = (lambda n: progress("generated", min(n * world, len(with_ref)), len(with_ref))) if progress else None
        generated = generate_answers(
            model,
            tokenizer,
            [examples[i] for i in mine],
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            device=device,
            on_batch=made,
        )
        predictions = dict(zip(with_ref, _shared_predictions(generated, world)))
        exact = sum(
            normalize_answer(p, examples[i].reference) == normalize_answer(examples[i].reference, examples[i].reference)
            for i, p in predictions.items()
        ) / len(with_ref)
    return EvalResult(
        loss=sums.loss,
        perplexity=math.exp(min(sums.loss, 700.0)),
        token_accuracy=sums.correct / sums.tokens if sums.tokens else float("nan"),
        tokens=sums.tokens,
        examples=len(examples),
        exact_match=exact,
        answer_accuracy=sums.answer_accuracy,
        per_example=example_rows(examples, table, predictions) if per_example else None,
    )
