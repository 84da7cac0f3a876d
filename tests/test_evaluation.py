import json

import pytest
import torch
import torch.nn.functional as F

from mftlab.training import chunked_nll
from mftlab.training.data import load_examples
from mftlab.training.evaluation import (
    LossSums,
    batch_loss_sums,
    evaluate,
    loss_sums,
    make_batches,
    normalize_answer,
    training_nll,
)


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


def _old_batch_stats(model, batch):
    """Evaluation's statistics as computed before the chunked NLL: the fp32 copy of all logits."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    shift_logits, shift_labels = logits[:, :-1, :].float(), batch.labels[:, 1:]
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100, reduction="sum"
    )
    valid = shift_labels != -100
    hit = (shift_logits.argmax(-1) == shift_labels) & valid
    has_answer = valid.any(dim=1)
    answer_right = (hit | ~valid).all(dim=1) & has_answer
    return nll, int(valid.sum()), int(hit.sum()), int(has_answer.sum()), int(answer_right.sum())


def _batches_the_model_partly_gets_right(model, examples, batch_size):
    """Labels replaced by the model's own argmax on every other example, so that the token and
    answer accuracies are far from 0 (labels do not enter the forward pass)."""
    batches = make_batches(examples, batch_size, 0)
    with torch.no_grad():
        for batch in batches:
            guess = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.argmax(-1)
            rows = torch.arange(len(guess)) % 2 == 0
            answer = batch.labels[:, 1:] != -100
            batch.labels[:, 1:][answer & rows[:, None]] = guess[:, :-1][answer & rows[:, None]]
    return batches


@pytest.mark.parametrize(
    "fixture,dtype,chunk_elements",  # 7 x 100 logits: 7-row chunks that end inside sequences
    [
        ("tiny_llama", None, None),
        ("tiny_llama", None, 700),
        ("tiny_gpt2", None, 700),
        ("tiny_llama", torch.bfloat16, 700),
    ],
)
def test_loss_sums_equal_the_full_logits_computation(
    fixture, dtype, chunk_elements, request, tokenizer, qa_file, monkeypatch
):
    model = request.getfixturevalue(fixture)
    if dtype is not None:
        model = model.to(dtype)
    if chunk_elements:
        monkeypatch.setattr(chunked_nll, "CHUNK_ELEMENTS", chunk_elements)
    examples, _ = load_examples(qa_file, tokenizer, 64)
    batches = _batches_the_model_partly_gets_right(model, examples, 5)
    new = loss_sums(model, batches)
    with torch.no_grad():
        old = [_old_batch_stats(model, b) for b in batches]
    old_nll = sum(float(s[0].double()) for s in old)
    assert abs(new.nll - old_nll) / old_nll < 1e-6
    assert abs(new.loss - old_nll / new.tokens) / new.loss < 1e-6
    assert (new.tokens, new.correct, new.answers, new.answers_correct) == tuple(
        sum(s[i] for s in old) for i in range(1, 5)
    )
    assert 0 < new.correct < new.tokens and 0 < new.answers_correct < new.answers


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_training_nll_value_and_gradient_equal_the_full_logits_computation(
    fixture, request, tokenizer, qa_file, monkeypatch
):
    model = request.getfixturevalue(fixture).train()
    monkeypatch.setattr(chunked_nll, "CHUNK_ELEMENTS", 11 * 100)
    examples, _ = load_examples(qa_file, tokenizer, 64)
    batch = make_batches(examples, 6, 0)[1]
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(0)  # dropout (GPT-2) draws the same masks in both passes
    old = _old_batch_stats(model, batch)[0]
    torch.manual_seed(0)
    new = training_nll(model, batch)
    assert abs(new.item() - old.item()) / old.item() < 1e-6
    for a, b in zip(torch.autograd.grad(new, params), torch.autograd.grad(old, params)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_training_gradient_is_bit_identical_to_cross_entropys_in_fp32(tiny_llama, tokenizer, qa_file, monkeypatch):
    """The trainer's scaled loss (nll x world / step tokens) gives cross_entropy's gradient bit for bit,
    so fp32 training follows the trajectory it followed before the chunked loss (the demo's numbers)."""
    model = tiny_llama.train()
    monkeypatch.setattr(chunked_nll, "CHUNK_ELEMENTS", 7 * 100)  # chunk boundaries inside sequences
    examples, _ = load_examples(qa_file, tokenizer, 64)
    batch = make_batches(examples, 6, 0)[1]
    params = [p for p in model.parameters() if p.requires_grad]
    scale = 2 / 37  # world / step tokens, not a power of two
    old = torch.autograd.grad(_old_batch_stats(model, batch)[0] * scale, params)
    new = torch.autograd.grad(training_nll(model, batch) * scale, params)
    assert all(torch.equal(a, b) for a, b in zip(new, old))


def test_batch_loss_sums_keeps_its_counts(tiny_llama, tokenizer, qa_file):
    examples, _ = load_examples(qa_file, tokenizer, 64)
    batch = _batches_the_model_partly_gets_right(tiny_llama, examples, 6)[1]
    nll, tokens, correct = batch_loss_sums(tiny_llama, batch)
    old = _old_batch_stats(tiny_llama, batch)
    assert nll.requires_grad and (tokens, correct) == old[1:3] and 0 < correct < tokens
    assert abs(nll.item() - old[0].item()) / old[0].item() < 1e-6
