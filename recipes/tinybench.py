"""The built-in tiny benchmark: three synthetic domains that mirror the paper's.

- `math`: multi-step arithmetic word problems ("Ann has 3 pens, gets 4, gives 2 away...").
- `code`: evaluating short list programs ("sort [3,1,2]", "rev", "max", "sum", "len").
- `instruct`: following a formatting instruction (upper/lower case, repetition, word order).

Each domain is a seeded generator of (prompt, answer) records with an exact-match scorer.
`hard=False` gives the easier variants used to "pre-train" the backbone; `hard=True` gives the
fine-tuning tasks. Train / validation / test splits are disjoint by construction (records are
de-duplicated across splits by prompt), and are written as ordinary jsonl files, so every other
command reads them like any user data.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

from mftlab.files.atomic import write_text_atomic

DOMAINS = ("math", "code", "instruct")
NAMES = ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal"]
ITEMS = ["pens", "cups", "keys", "hats", "eggs", "maps"]
WORDS = [
    "cat",
    "sun",
    "map",
    "red",
    "top",
    "box",
    "fig",
    "owl",
    "jam",
    "kit",
    "log",
    "pod",
    "ant",
    "bee",
    "cow",
    "dog",
    "elk",
    "fox",
    "gnu",
    "hen",
    "ink",
    "jar",
    "keg",
    "lid",
]


def _math(rng: random.Random, hard: bool) -> tuple[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    total = rng.randint(1, 9)
    text = f"{name} has {total} {item}"
    for _ in range(rng.randint(2, 3) if hard else 1):
        if rng.random() < 0.5 or total < 2:
            n = rng.randint(1, 9)
            total += n
            text += f", gets {n}"
        else:
            n = rng.randint(1, total - 1)
            total -= n
            text += f", loses {n}"
    return f"{text}. How many {item}?\n", str(total)


def _code(rng: random.Random, hard: bool) -> tuple[str, str]:
    xs = [rng.randint(0, 9) for _ in range(rng.randint(3, 5) if hard else rng.randint(2, 3))]
    ops = ["sort", "rev", "max", "sum", "len"] if hard else ["rev", "max"]
    op = rng.choice(ops)
    result = {
        "sort": lambda: str(sorted(xs)),
        "rev": lambda: str(xs[::-1]),
        "max": lambda: str(max(xs)),
        "sum": lambda: str(sum(xs)),
        "len": lambda: str(len(xs)),
    }[op]()
    return f"{op} {xs}\n".replace(", ", ","), result.replace(", ", ",")


def _instruct(rng: random.Random, hard: bool) -> tuple[str, str]:
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 3) if hard else rng.randint(1, 2))]
    text = " ".join(words)
    ops = ["upper", "repeat", "backwards", "first"] if hard else ["upper", "repeat"]
    op = rng.choice(ops)
    if op == "upper":
        return f"Write in capitals: {text}\n", text.upper()
    if op == "repeat":
        return f"Say twice: {text}\n", f"{text} {text}"
    if op == "backwards":
        return f"Reverse the words: {text}\n", " ".join(reversed(words))
    return f"First word only: {text}\n", words[0]


GENERATORS = {"math": _math, "code": _code, "instruct": _instruct}


@dataclass(frozen=True)
class SplitSizes:
    train: int = 400
    validation: int = 100
    test: int = 200


def generate_records(domain: str, n: int, seed: int, hard: bool = True, exclude: set[str] | None = None) -> list[dict]:
    """`n` distinct records of one domain; prompts in `exclude` are skipped (split disjointness)."""
    if domain not in GENERATORS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {DOMAINS}")
    rng = random.Random(f"{domain}:{seed}:{hard}")
    seen = set(exclude or ())
    records = []
    for _ in range(n * 50):
        prompt, answer = GENERATORS[domain](rng, hard)
        if prompt in seen:
            continue
        seen.add(prompt)
        records.append({"prompt": prompt, "completion": answer, "answer": answer, "domain": domain})
        if len(records) == n:
            return records
    raise ValueError(f"domain {domain!r} cannot produce {n} distinct records (got {len(records)})")


def make_splits(domain: str, seed: int, sizes: SplitSizes = SplitSizes()) -> dict[str, list[dict]]:
    """Disjoint train / validation / test records of one domain (hard variants)."""
    test = generate_records(domain, sizes.test, seed * 3 + 2)
    used = {r["prompt"] for r in test}
    validation = generate_records(domain, sizes.validation, seed * 3 + 1, exclude=used)
    used |= {r["prompt"] for r in validation}
    train = generate_records(domain, sizes.train, seed * 3, exclude=used)
    return {"train": train, "validation": validation, "test": test}


def pretraining_records(n_per_domain: int, seed: int) -> list[dict]:
    """The backbone's "pre-training" mixture: easier variants of every domain, interleaved.

    Easy variants share the formats of the fine-tuning tasks but never their prompts (hard
    prompts have more steps, longer lists or more words), so no test record leaks in.
    """
    mixed = []
    for domain in DOMAINS:
        mixed += generate_records(domain, n_per_domain, seed + 1000, hard=False)
    random.Random(seed).shuffle(mixed)
    return mixed


def write_jsonl(records: list[dict], path: str) -> str:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
    return path


def write_benchmark(folder: str, seed: int, sizes: SplitSizes = SplitSizes()) -> dict[str, dict[str, str]]:
    """Write every domain's splits as `folder/<domain>/<split>.jsonl`; returns the paths."""
    paths = {}
    for domain in DOMAINS:
        os.makedirs(os.path.join(folder, domain), exist_ok=True)
        splits = make_splits(domain, seed, sizes)
        paths[domain] = {
            name: write_jsonl(records, os.path.join(folder, domain, f"{name}.jsonl"))
            for name, records in splits.items()
        }
    return paths
