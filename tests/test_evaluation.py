import json

import pytest
import torch

from mftlab.training.data import load_examples
from mftlab.training.evaluation import LossSums, evaluate, loss_sums, make_batches, normalize_answer


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture
def qa_file(tmp_path):
    records = [{"prompt": f"{a}+{b}=", "completion": str(a + b)} for a in range(6) for b in range(4)]
    return write(tmp_path / "qa.jsonl", records)


def test_loss_is_token_weighted_not_a_mean_of_batch_means(tiny_llama, tokenizer, qa_file):
    examples, _ = load_examples(qa_file, tokenizer, 64)
    whole = loss_sums(tiny_llama, make_batches(examples, 64, 0))
    split = loss_sums(tiny_llama, make_batches(examples, 5, 0))
    assert whole.tokens == split.tokens == sum(sum(1 for x in e.labels[1:] if x != -100) for e in examples)
    assert split.loss == pytest.approx(whole.loss, rel=1e-5)


def test_teacher_forced_answer_accuracy_equals_greedy_exact_match(tiny_llama, tokenizer, qa_file):
    examples, _ = load_examples(qa_file, tokenizer, 64)
    model = tiny_llama
    # Make the model answer some prompts right: a few steps of plain fine-tuning.
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = make_batches(examples, 64, 0)[0]
    model.train()
    for _ in range(60):
        loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    result = evaluate(model, tokenizer, examples, batch_size=8, generate=True, max_new_tokens=4)
    assert 0 < result.exact_match
    assert result.answer_accuracy == pytest.approx(result.exact_match)


def test_loss_sums_add_up():
    a, b = LossSums(1.0, 2, 1, 1, 0), LossSums(3.0, 2, 2, 1, 1)
    total = a + b
    assert (total.nll, total.tokens, total.correct, total.answers, total.answers_correct) == (4.0, 4, 3, 2, 1)
    assert total.loss == 1.0 and total.answer_accuracy == 0.5


def test_normalize_answer():
    assert normalize_answer(" The answer is 42.\nmore", "42") == "42"
    assert normalize_answer("HELLO  world.", "HELLO world") == "HELLO world"
