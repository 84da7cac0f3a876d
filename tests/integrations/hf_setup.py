"""Shared by the Trainer tests and their torchrun script: tiny data, collator, Trainer with MaskCallback."""

import json

from mftlab.training.data import Example, load_examples
from mftlab.training.evaluation import collate

DEFAULTS = dict(mask_ratio=0.1, seed=0)


def write_data(path, n=4):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": f"{i}+{i + 1}=", "completion": str(2 * i + 1)}) + "\n")
    return str(path)


def dataset(path, tokenizer, max_seq_len=32):
    """mftlab's own tokenisation (prompt tokens ignored), as rows a Trainer can batch."""
    examples, _ = load_examples(path, tokenizer, max_seq_len)
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]


def collator(pad_id):
    def collate_rows(rows):
        batch = collate([Example(r["input_ids"], r["labels"], []) for r in rows], pad_id)
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "labels": batch.labels}

    return collate_rows


def make_trainer(model, tokenizer, data_path, out, callback, batch_size=4, max_steps=3, **args):
    from transformers import Trainer, TrainingArguments

    arguments = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch_size,
        max_steps=max_steps,
        learning_rate=0.05,
        warmup_steps=0,
        max_grad_norm=0.0,
        logging_steps=1,
        save_steps=2,
        save_strategy="steps",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **args,
    )
    return Trainer(
        model=model,
        args=arguments,
        train_dataset=dataset(data_path, tokenizer),
        data_collator=collator(tokenizer.pad_token_id),
        callbacks=[callback],
    )
