"""Every generated table of the benchmark studies' READMEs (and their ``results/tables.md``) is what the
committed summary gives: ``study.py --tables`` rewrites them from ``results/summary.jsonl``, and this test
fails when a README and its summary drift apart. Tables outside the markers are only the static
descriptions listed here (data sets, not measurements)."""

from __future__ import annotations

import re

import pytest

from _helpers import BENCHMARKS, benchmark_module

STUDIES = ["licl/study.py", "ala2/study.py", "water/study.py"]

#: tables that describe inputs, not results: (README, header line)
STATIC = {("licl/README.md", "| | |"), ("water/README.md", "| | |")}


def _study(script):
    return benchmark_module(script).STUDY


@pytest.mark.parametrize("script", STUDIES)
def test_readme_tables_regenerate_from_the_summary(script):
    st = _study(script)
    from study_kit import table_differences

    docs = st.documents()
    assert st.readme in docs
    for path, tables in docs.items():
        assert tables and all(t.strip() for t in tables.values()), path
        assert table_differences(path, tables) == [], f"{path}: run `python benchmarks/{script} --tables`"


@pytest.mark.parametrize("script", STUDIES)
def test_no_unmarked_result_tables(script):
    """Outside the generated blocks a README holds only the static description tables."""
    st = _study(script)
    text = re.sub(r"<!-- table (\S+).*?<!-- end table \1 -->", "", st.readme.read_text(), flags=re.S)
    lines = text.splitlines()
    readme = str(st.readme.relative_to(BENCHMARKS))
    for i, line in enumerate(lines):
        if line.strip().startswith("|") and not (i and lines[i - 1].strip().startswith("|")):
            assert (readme, line.strip()) in STATIC, f"{readme}: unmarked table {line.strip()[:60]}"


@pytest.mark.parametrize("script", STUDIES)
def test_the_benchmarks_index_lists_every_generated_table_and_its_command(script):
    """``benchmarks/README.md`` names each generated table of the study's documents (by its marker name)
    on the row of that document, next to the command that regenerates it."""
    st = _study(script)
    index = (BENCHMARKS / "README.md").read_text()
    for path, tables in st.documents().items():
        page = str(path.relative_to(BENCHMARKS))
        rows = [line for line in index.splitlines() if line.startswith(f"| `{page}` |")]
        assert rows, f"benchmarks/README.md has no row for {page}"
        assert f"benchmarks/{script} --tables" in rows[0], rows[0]
        listed = set(re.findall(r"`([a-z0-9.-]+)`", rows[0]))
        assert set(tables) <= listed, f"{page}: not listed in benchmarks/README.md: {sorted(set(tables) - listed)}"


def test_the_fit_table_regenerates_from_its_records():
    """``benchmarks/fit_systems.md`` is what ``fit_systems.py --tables`` writes from ``fit_systems.jsonl``,
    and each measured zoo system's card note quotes the same mean."""
    fit_systems = benchmark_module("fit_systems.py")
    assert fit_systems.TABLE.read_text() == fit_systems.tables(), "run `python benchmarks/fit_systems.py --tables`"
    for name, (_, _, system) in fit_systems.ZOO_FIT.items():
        records = [r for r in fit_systems.summary().records("fit") if r["system"] == system]
        card = (BENCHMARKS.parent / "models" / name / "README.md").read_text()
        assert fit_systems.card_note(name) in card, f"models/{name}/README.md: its fit paragraph is out of date"
        if records:
            assert fit_systems.mean_std([r["score"] for r in records]) in card


def test_the_morse_dimer_table_regenerates_from_its_records():
    """``benchmarks/morse_dimer.md`` is what ``morse_dimer.py --table`` writes from ``morse_dimer.jsonl``."""
    import json

    morse = benchmark_module("morse_dimer.py")
    records = [json.loads(line) for line in morse.RECORDS.read_text().splitlines() if line.strip()]
    assert {r["recipe"] for r in records} == set(morse.RECIPES)
    assert morse.TABLE.read_text() == morse.table(records), "run `python benchmarks/morse_dimer.py --table`"
