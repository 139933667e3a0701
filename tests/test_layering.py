"""The house's import direction (issue 25, docs/architecture.md "Layout"): one way, from the bottom up.

``store`` (the MLflow contract and its readers / writers) at the bottom; ``spec`` (the search-space file)
and ``services`` above it; ``search`` and ``report`` above those; ``sweep`` (the driver) above the search;
``commands`` and ``cli`` on top. A module may import its own folder and any lower layer, never a higher
one nor a sibling of its own height (``search`` and ``report`` do not know each other). ``mer_model`` (the
model, data and training) imports nothing from ``orchestrator``. Every import counts, including the ones
inside functions (the lazy imports that keep start-up fast).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"store": 0, "spec": 1, "services": 1, "search": 2, "report": 2, "sweep": 3, "commands": 4, "cli": 5}


def _part(module: str) -> str | None:
    """The layer a dotted module belongs to: ``orchestrator.<part>...`` -> part; mer_model -> 'mer_model'."""
    bits = module.split(".")
    if bits[0] == "mer_model":
        return "mer_model"
    if bits[0] != "orchestrator" or len(bits) < 2:
        return None
    return bits[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``path``; ``from orchestrator import x`` counts as
    ``orchestrator.x``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "orchestrator":
                out += [(node.lineno, f"orchestrator.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def violations(root: Path) -> list[str]:
    """Every upward or sideways import under ``root``'s packages, as ``file:line imports module``."""
    bad = []
    for pkg in ("orchestrator", "mer_model"):
        for path in sorted((root / pkg).rglob("*.py")):
            mod = ".".join(path.relative_to(root).with_suffix("").parts)
            src = _part(mod)
            for line, target in _imports(path):
                dst = _part(target)
                if dst is None or dst == src:
                    continue
                if src == "mer_model" or (dst != "mer_model" and (
                        src not in LAYERS or dst not in LAYERS or LAYERS[dst] >= LAYERS[src])):
                    bad.append(f"{path.relative_to(root)}:{line} imports {target}")
    return bad


def test_imports_run_one_way() -> None:
    assert violations(ROOT) == []


def test_every_folder_of_orchestrator_has_a_layer() -> None:
    """A new folder or top-level module must be placed in the order before it can pass the test above."""
    entries = {p.stem for p in (ROOT / "orchestrator").iterdir()
               if p.name != "__init__.py" and not p.name.startswith((".", "__pycache__"))}
    assert entries <= set(LAYERS), sorted(entries - set(LAYERS))
    assert len(entries) <= 8  # the layout is read from the folder names: few, one concern each


@pytest.mark.parametrize("src, line", [
    ("store/contract.py", "from orchestrator.sweep import driver"),  # up from the bottom
    ("search/study.py", "    from orchestrator.report.stats import x"),  # sideways, inside a function
    ("spec/plan.py", "from orchestrator import services"),  # sideways at the same height
])
def test_an_upward_import_fails(tmp_path: Path, src: str, line: str) -> None:
    """The check itself: a copy of the tree with one bad import in it is caught, at the right place."""
    for pkg in ("orchestrator", "mer_model"):
        for p in (ROOT / pkg).rglob("*.py"):
            dst = tmp_path / p.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(p.read_text())
    target = tmp_path / "orchestrator" / src
    body = "def _f():\n" + line + "\n" if line.startswith(" ") else line + "\n"
    target.write_text(target.read_text() + "\n" + body)
    bad = violations(tmp_path)
    assert len(bad) == 1 and bad[0].startswith(f"orchestrator/{src}:"), bad


def test_mer_model_imports_nothing_of_orchestrator(tmp_path: Path) -> None:
    (tmp_path / "mer_model").mkdir()
    (tmp_path / "orchestrator").mkdir()
    (tmp_path / "mer_model" / "m.py").write_text("from orchestrator.store import contract\n")
    assert violations(tmp_path) == ["mer_model/m.py:1 imports orchestrator.store"]
