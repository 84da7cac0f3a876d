"""Every document the code names exists in the repository (a reader can follow every reference)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ("mftlab", "analysis", "recipes", "figures", "cli", "bench", "tests")
# a document: an upper-case name (README.md, CONTRIBUTING.md), or any name under a folder (docs/NAME);
# not an attribute such as `page.md`
NAMED = re.compile(r"(?<![\w.])((?:[\w\-]+/)*[A-Z][A-Z0-9_\-]*\.md|(?:[\w\-.]+/)+[\w\-]+\.md)\b")
WRITTEN_BY_RUNS = {"report.md", "plan.md", "sweep.md"}  # files a run writes into its --out folder, not documents


def _sources():
    for top in FOLDERS:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(folder, name)
    for name in ("setup.cfg", "pyproject.toml", "Makefile"):
        yield os.path.join(ROOT, name)


def test_every_markdown_file_named_in_code_exists():
    missing = []
    for path in _sources():
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                for name in NAMED.findall(line):
                    if os.path.basename(name) in WRITTEN_BY_RUNS:
                        continue
                    here = os.path.join(os.path.dirname(path), name)
                    if not (os.path.exists(os.path.join(ROOT, name)) or os.path.exists(here)):
                        missing.append(f"{os.path.relpath(path, ROOT)}:{number}: {name}")
    assert missing == [], "documents named in code but not in the repository"
