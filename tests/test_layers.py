"""The package's layers import downward only (lazy, function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "longzoo"
# Lowest first; a module may import its own layer and the layers before it.
LAYERS = [
    ("errors", "numbers", "choices", "text", "outputs", "records", "manifest", "progress", "quiet", "weights"),
    ("cards",),
    ("converters",),
    ("models",),
    ("data",),
    ("evaluation",),
    ("training",),
    ("hub",),
    ("zoo",),
    ("cli", "__init__", "__main__"),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("longzoo"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("longzoo"))
    return found


def test_every_module_belongs_to_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert tops - {"__pycache__"} <= set(RANK), tops - set(RANK)


def test_nothing_imports_upward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", ".")
        for target in _imports(path):
            if target != "longzoo" and RANK[_layer(target)] > RANK[_layer(here)]:
                upward.append(f"{here} -> {target}")
    assert not upward, "\n".join(upward)
