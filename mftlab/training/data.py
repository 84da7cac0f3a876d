"""Training and evaluation data: records from files or `datasets`, tokenised with answer-only labels.

Sources: local .jsonl / .json / .parquet / .csv files, folders written by
`datasets.Dataset.save_to_disk`, or hub ids when the hub is reachable.
Record formats (one per record, detected by its fields):
- {"messages": [{"role", "content"}, ...]}: rendered with the tokenizer's chat template; the
  final assistant turn is the answer.
- {"prompt", "completion"}: the completion is the answer.
- {"text"}: every token is trained on.
An optional "answer" field is the reference for generation exact-match (defaults to the
completion / final assistant turn). Labels are -100 on prompt tokens, so the loss covers
answer tokens only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from mftlab.errors import DataError

IGNORE_INDEX = -100
FILE_TYPES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass
class Record:
    prompt: str  # text that conditions the answer (may be "")
    answer: str  # text that is trained on / generated
    reference: str | None  # expected answer for exact-match, if any
    where: str  # "file.jsonl:12" for messages
    chat: bool = False  # rendered by a chat template, which already holds the special tokens
    id: str | None = None  # the record's own `id` field, when it has one (per-example results name it)


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens
    prompt_ids: list[int]
    reference: str | None = None
    id: str | None = None  # the record's `id` field
    key: str | None = None  # a short hash of the record's prompt and answer text: which example this is


def text_key(prompt: str, answer: str) -> str:
    """12 hex digits naming an example by its text, so per-example results of two models can be checked
    to cover the same examples (independent of tokenizer and file path)."""
    import hashlib

    return hashlib.sha1(f"{prompt}\x00{answer}".encode()).hexdigest()[:12]


def label_tokens(example: Example) -> int:
    """Answer tokens a next-token loss covers (labels shift by one, so the first never counts)."""
    return sum(1 for label in example.labels[1:] if label != IGNORE_INDEX)


@dataclass
class DataReport:
    """What loading found: counts, and the problems of skipped records."""

    records: int = 0
    examples: int = 0
    skipped: list[str] = field(default_factory=list)
    truncated: int = 0


# -- reading records ----------------------------------------------------------------------
def _parse_line(raw: bytes, where: str) -> object:
    """One JSON Lines record, or the DataError that describes why it is unusable."""
    try:
        line = raw.decode("utf-8-sig")  # -sig: a byte-order mark some editors write is not an error
    except UnicodeDecodeError as exc:
        return DataError(f"{where}: not UTF-8 text (byte {exc.start + 1} of the line); save the file as UTF-8")
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return DataError(f"{where}: not valid JSON ({exc.msg}); fix or remove the line")
    except RecursionError:
        return DataError(f"{where}: JSON nested too deeply to read; fix or remove the line")


def _read_jsonl(path: str) -> list[tuple[object, str]]:
    rows = []
    with open(path, "rb") as f:  # bytes, so one badly encoded line is reported, not a crash
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            row = _parse_line(raw, where)
            if row is not None:
                rows.append((row, where))
    return rows


def _csv_text_features(path: str):
    """Every CSV column as text: otherwise an answer column of numbers ("4") is read as int."""
    import csv

    import datasets

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    return datasets.Features({name: datasets.Value("string") for name in header}) if header else None


def _read_with_datasets(source: str) -> list[tuple[object, str]]:
    import datasets

    try:
        if os.path.isdir(source):
            data = datasets.load_from_disk(source)
        elif os.path.isfile(source):
            kind = FILE_TYPES[os.path.splitext(source)[1].lower()]
            extra = {"features": _csv_text_features(source)} if kind == "csv" else {}
            data = datasets.load_dataset(kind, data_files=source, split="train", **extra)
        else:
            data = datasets.load_dataset(source, split="train")
    except Exception as exc:  # datasets raises many types for unreadable input
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read data '{source}': {first}") from None
    if isinstance(data, datasets.DatasetDict):
        if "train" not in data:
            raise DataError(f"'{source}' holds splits {list(data)} but no 'train'; save one split or name a file")
        data = data["train"]
    return [(row, f"{source}:{i + 1}") for i, row in enumerate(data)]


def read_rows(source: str) -> list[tuple[object, str]]:
    """Raw rows with their location ('file:line' or 'source:row')."""
    source = os.fspath(source)
    ext = os.path.splitext(source)[1].lower()
    if os.path.isfile(source) and ext not in FILE_TYPES:
        raise DataError(f"data file '{source}' has unknown type '{ext}'; use .jsonl, .json, .parquet or .csv")
    looks_like_path = os.path.sep in source or ext in FILE_TYPES
    if looks_like_path and not os.path.exists(source):
        raise DataError(f"data file '{source}' does not exist; check the path")
    if ext == ".jsonl" and os.path.isfile(source):
        return _read_jsonl(source)
    return _read_with_datasets(source)


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {type(value).__name__}; fix the record")
    return value


def to_record(row: object, where: str, tokenizer=None) -> Record:
    """One raw row -> Record, or DataError naming the location and the problem."""
    if isinstance(row, DataError):
        raise row
    if not isinstance(row, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {type(row).__name__}")
    record = _record(row, where, tokenizer)
    if isinstance(row.get("id"), (str, int)) and not isinstance(row.get("id"), bool):
        record.id = str(row["id"])
    return record


def _record(row: dict, where: str, tokenizer) -> Record:
    reference = row.get("answer") if isinstance(row.get("answer"), str) else None
    if "messages" in row:
        return _messages_record(row["messages"], where, tokenizer, reference)
    if "prompt" in row or "completion" in row:
        prompt, completion = _text(row, "prompt", where), _text(row, "completion", where)
        if not completion.strip():
            raise DataError(f"{where}: 'completion' is empty; every record needs an answer to train on")
        return Record(prompt, completion, reference if reference is not None else completion, where)
    if "text" in row:
        text = _text(row, "text", where)
        if not text.strip():
            raise DataError(f"{where}: 'text' is empty; remove the record")
        return Record("", text, reference, where)
    raise DataError(
        f"{where}: record has fields {sorted(row)[:6]} but needs 'messages', 'prompt'+'completion' or 'text'"
    )


def _messages_record(messages, where: str, tokenizer, reference) -> Record:
    ok = (
        isinstance(messages, list)
        and messages
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        )
    )
    if not ok:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}} strings")
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise DataError(f"{where}: the last message must be a non-empty assistant turn (the answer)")
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise DataError(f"{where}: 'messages' records need a tokenizer with a chat template; use prompt/completion")
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise DataError(f"{where}: the chat template does not render the prompt as a prefix; use prompt/completion")
    answer = messages[-1]["content"]
    return Record(prompt, full[len(prompt) :], reference if reference is not None else answer, where, chat=True)


def load_records(source: str, tokenizer=None, skip_bad: bool = False, report: DataReport | None = None) -> list[Record]:
    """All records of `source`. A malformed record raises DataError (or is skipped and reported)."""
    report = report if report is not None else DataReport()
    records = []
    for row, where in read_rows(source):
        try:
            records.append(to_record(row, where, tokenizer))
        except DataError as exc:
            if not skip_bad:
                raise
            report.skipped.append(str(exc))
    report.records = len(records)
    if not records:
        raise DataError(f"data '{source}' holds no usable records; see the record formats in `mftlab train --help`")
    return records


# -- tokenising ---------------------------------------------------------------------------
def _special_prefix(tokenizer) -> list[int]:
    """Tokens the tokenizer puts before any text (e.g. Llama's BOS), found by comparison."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    n = len(with_special) - len(without)
    return list(with_special[:n]) if n > 0 and with_special[n:] == without else []


def tokenize_record(record: Record, tokenizer, max_seq_len: int) -> tuple[Example, bool]:
    """Record -> Example with answer-only labels; returns (example, truncated)."""
    if record.chat:  # the chat template already placed every special token
        prompt_ids = tokenizer(record.prompt, add_special_tokens=False)["input_ids"]
    elif record.prompt:
        prompt_ids = tokenizer(record.prompt, add_special_tokens=True)["input_ids"]
    else:
        prompt_ids = _special_prefix(tokenizer)
    answer_ids = tokenizer(record.answer, add_special_tokens=False)["input_ids"]
    if getattr(tokenizer, "eos_token_id", None) is not None and not record.chat:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    ids = list(prompt_ids) + list(answer_ids)
    labels = [IGNORE_INDEX] * len(prompt_ids) + list(answer_ids)
    truncated = len(ids) > max_seq_len
    example = Example(
        ids[:max_seq_len],
        labels[:max_seq_len],
        list(prompt_ids),
        record.reference,
        record.id,
        text_key(record.prompt, record.answer),
    )
    return example, truncated


def tokenize_records(
    records: list[Record], tokenizer, max_seq_len: int, report: DataReport | None = None
) -> list[Example]:
    """Tokenise every record; records left with no answer token after truncation are skipped."""
    if max_seq_len < 2:
        raise DataError(f"--max-seq-len {max_seq_len} is too small; use at least 2 (e.g. 512)")
    report = report if report is not None else DataReport()
    examples = []
    for record in records:
        example, truncated = tokenize_record(record, tokenizer, max_seq_len)
        report.truncated += int(truncated)
        if all(label == IGNORE_INDEX for label in example.labels[1:]):
            report.skipped.append(f"{record.where}: no answer token within --max-seq-len {max_seq_len}; skipped")
            continue
        examples.append(example)
    report.examples = len(examples)
    if not examples:
        raise DataError(f"no record has answer tokens within --max-seq-len {max_seq_len}; raise it")
    return examples


def select_fraction(items: list, fraction: float, seed: int) -> list:
    """A deterministic random subset of ceil(fraction * n) items (order shuffled by `seed`)."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"--data-fraction {fraction} is outside (0, 1]; use e.g. 0.1 for 10% of the data")
    order = np.random.default_rng(seed).permutation(len(items))
    keep = max(1, math.ceil(fraction * len(items)))
    return [items[i] for i in order[:keep]]


def load_examples(
    source: str,
    tokenizer,
    max_seq_len: int = 512,
    *,
    data_fraction: float = 1.0,
    seed: int = 0,
    skip_bad: bool = False,
) -> tuple[list[Example], DataReport]:
    """Read, validate, subset (`data_fraction`) and tokenise a data source."""
    if tokenizer is None:
        raise DataError("this model has no tokenizer; save one in the model folder (tokenizer.json etc.)")
    report = DataReport()
    records = load_records(source, tokenizer, skip_bad, report)
    if data_fraction < 1.0:
        records = select_fraction(records, data_fraction, seed)
    return tokenize_records(records, tokenizer, max_seq_len, report), report
