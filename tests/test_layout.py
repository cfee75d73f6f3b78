"""The package's layout holds (docs/design.md, "Layout"): stages as subpackages whose ``__init__`` says
what each module owns, imports that form no cycle, no module over 600 lines, and a command line whose
help names every command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "ase_denoise"
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Set[str]:
    """The ase_denoise modules ``path`` imports, at any depth of the file (lazy imports count: they are
    dependencies too), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("ase_denoise"):
                continue
            found.add(target)
            for alias in node.names:  # "from . import zoo" imports a module
                if (PACKAGE.parent / (target.replace(".", "/") + f"/{alias.name}.py")).exists():
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ase_denoise")}
    return found


def graph() -> Dict[str, Set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}
    return {name: {t for t in imports(path) if t in modules and t != name} for name, path in modules.items()}


def find_cycle(edges: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return []

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_the_imports_form_no_cycle():
    edges = graph()
    assert len(edges) > 40 and "ase_denoise.refine.check" in edges["ase_denoise.refine"]
    assert find_cycle(edges) == [], " -> ".join(find_cycle(edges))
    # the finder finds one when there is one
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_is_over_600_lines():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > MAX_LINES} == {}


def test_every_stage_says_what_each_of_its_modules_owns():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        modules = sorted(p.stem for p in init.parent.glob("*.py") if p.stem not in ("__init__", "__main__"))
        missing = [m for m in modules if f"{module_name(init)}.{m}" not in doc and f"``{m}``" not in doc]
        assert doc and not missing, f"{init.relative_to(PACKAGE)}: its docstring does not name {missing}"


def test_the_top_level_help_names_every_command():
    out = subprocess.run([sys.executable, "-m", "ase_denoise.cli", "--help"], capture_output=True, text=True, check=True)
    from ase_denoise.cli.common import COMMANDS

    assert len(COMMANDS) >= 10
    assert all(name in out.stdout for name in COMMANDS), out.stdout


def test_the_docs_sections_the_code_cites_exist():
    """Code cites the design notes as ``docs/<page>.md, "<section>"``: every such page exists and has a
    heading that starts with the section (a renamed or moved section fails here, not in a reader's hands)."""
    import re

    docs = PACKAGE.parent / "docs"
    cite = re.compile(r'docs/([\w./-]+\.md)`*,\s+"([^"]+)"')
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = " ".join(path.read_text().split())  # citations may wrap across lines
        for page, section in cite.findall(text):
            target = docs / page
            headings = [line.lstrip("#").strip() for line in target.read_text().splitlines() if line.startswith("#")] \
                if target.is_file() else []
            if not any(h.startswith(section) for h in headings):
                missing.append(f"{path.relative_to(PACKAGE)}: docs/{page}, {section!r}")
    assert missing == []
