import json

import pytest

from mftlab.errors import DataError
from mftlab.training.data import IGNORE_INDEX, load_examples, select_fraction


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_three_record_formats_and_answer_only_labels(tmp_path, tokenizer):
    path = write(
        tmp_path / "d.jsonl",
        [
            json.dumps({"prompt": "ab", "completion": "cd"}),
            json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}),
            json.dumps({"text": "plain"}),
        ],
    )
    examples, report = load_examples(path, tokenizer, 64)
    assert report.examples == 3
    pc, chat, text = examples
    answer = [t for t in pc.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(answer) == "cd" + tokenizer.eos_token
    assert pc.labels[:2] == [IGNORE_INDEX, IGNORE_INDEX]
    assert tokenizer.decode([t for t in chat.labels if t != IGNORE_INDEX]).startswith("yo")
    assert all(t != IGNORE_INDEX for t in text.labels)


@pytest.mark.parametrize(
    "line, match",
    [
        ('{"prompt": "a"', "d.jsonl:2: not valid JSON"),
        ('{"prompt": "a"}', "d.jsonl:2: field 'completion' must be a string"),
        ('{"prompt": "a", "completion": " "}', "d.jsonl:2: 'completion' is empty"),
        ('{"question": "a"}', "d.jsonl:2: record has fields"),
        ("[1, 2]", "d.jsonl:2: a record must be a JSON object"),
    ],
)
def test_malformed_records_name_file_and_line(tmp_path, tokenizer, line, match):
    path = write(tmp_path / "d.jsonl", [json.dumps({"prompt": "x", "completion": "y"}), line])
    with pytest.raises(DataError, match=match):
        load_examples(path, tokenizer, 64)
    examples, report = load_examples(path, tokenizer, 64, skip_bad=True)
    assert len(examples) == 1 and len(report.skipped) == 1


def test_parquet_csv_and_saved_datasets(tmp_path, tokenizer):
    import datasets

    data = datasets.Dataset.from_list([{"prompt": "p", "completion": "c"}] * 3)
    data.to_parquet(str(tmp_path / "d.parquet"))
    data.to_csv(str(tmp_path / "d.csv"))
    data.save_to_disk(str(tmp_path / "saved"))
    for source in ("d.parquet", "d.csv", "saved"):
        examples, _ = load_examples(str(tmp_path / source), tokenizer, 64)
        assert len(examples) == 3


def test_missing_and_unknown_files(tmp_path, tokenizer):
    with pytest.raises(DataError, match="does not exist"):
        load_examples(str(tmp_path / "none.jsonl"), tokenizer, 64)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unknown type"):
        load_examples(str(tmp_path / "d.txt"), tokenizer, 64)


def test_data_fraction_is_deterministic():
    items = list(range(100))
    assert select_fraction(items, 0.1, 3) == select_fraction(items, 0.1, 3)
    assert len(select_fraction(items, 0.1, 3)) == 10
    assert select_fraction(items, 0.1, 3) != select_fraction(items, 0.1, 4)
