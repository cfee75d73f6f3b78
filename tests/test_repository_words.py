"""What users read speaks of the project only.

Code, docs, model cards, benchmarks and tests state a figure with the command that measures it, the
date or commit and the machine; they never refer to how the project was made (a numbered work
session, "this" or "the last" one, a numbered tracker item): a user cannot know what those are.
pytest's ``scope="session"`` and words like "a Jupyter session" are not such references. Every
tracked text file but this one (which spells the patterns out) is read.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Built from parts, so that this file does not match itself.
_SESSION = "sess" + "ion"
_ISSUE = "iss" + "ue"
PROCESS_WORDS = re.compile(
    rf"\b{_SESSION}s? #?\d+"  # the word and a number (or a range)
    rf"|\b(?:this|last|next|previous|earlier|later|same|that|each|one) {_SESSION}\b"  # "this ..."
    rf"|\b{_SESSION}'s\b"
    rf"|\b{_ISSUE}s? #?\d+",  # the tracker's numbers (the tracker is not public)
    re.IGNORECASE,
)


def tracked_text_files():
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    for name in names.decode().split("\0"):
        path = REPO / name
        if not name or not path.is_file() or name == "tests/test_repository_words.py":
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary (model weights, arrays, images)
            continue
        yield name, data.decode("utf-8", errors="replace")


def test_no_words_about_how_the_project_was_made():
    hits = [f"{name}:{number}: {line.strip()[:120]}"
            for name, text in tracked_text_files()
            for number, line in enumerate(text.splitlines(), start=1)
            if PROCESS_WORDS.search(line)]
    assert hits == [], "state the date or commit and the machine instead:\n" + "\n".join(hits[:40])


@pytest.mark.parametrize("line, found", [
    ("measured in " + _SESSION + " 12 on 2 cores", True),
    ("(" + _SESSION.capitalize() + " 22: 462 passed)", True),
    ("as this " + _SESSION + " showed", True),
    ("the last " + _SESSION + "'s CI run", True),
    ("see " + _ISSUE + " 15", True),
    ('@pytest.fixture(scope="' + _SESSION + '")', False),
    ("shared by the whole " + _SESSION + ": do not change it", False),
    ("a Jupyter " + _SESSION, False),
])
def test_the_pattern_catches_process_words_and_spares_ordinary_ones(line, found):
    assert bool(PROCESS_WORDS.search(line)) is found
