"""The package's shape (DESIGN: "imports point down"): entry points on top, wings below them, each wing
importing only wings beneath it, lazy imports included, and no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "spatialprobe"
ENTRY_POINTS = {"train", "evaluate", "inspect", "collect", "plot", "rank", "decode", "search_k", "plot_detection",
                "position_figures"}
#: lowest first; a module may import its own wing and any wing listed before it
LAYERS = ["errors", "config", "run", "methods", "models", "surgery", "data", "tasks", "position", "launch", "report"]


def wing(module: str) -> str:
    """``spatialprobe.run.records`` -> ``run``; an entry point -> ``entry`` (a wing's ``__main__`` too:
    ``python -m spatialprobe.report``); the package itself -> ``package``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in ENTRY_POINTS | set(LAYERS):
        return "package"  # spatialprobe itself, or a name it defines (CONF_DIR, __version__)
    return "entry" if parts[1] in ENTRY_POINTS or parts[-1] == "__main__" else parts[1]


def imports(path: Path) -> set[str]:
    """Every spatialprobe module this file imports, at any depth (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spatialprobe"):
            found |= {f"{node.module}.{a.name}" if node.module == "spatialprobe" else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("spatialprobe")}
    return found


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def test_every_module_is_an_entry_point_or_in_a_wing():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == ENTRY_POINTS | {"surgery", "errors"}, sorted(top)
    # a command named like its wing (report) is the wing's __main__: a report.py beside report/ cannot be imported
    assert sorted(p.parent.name for p in PACKAGE.glob("*/__main__.py")) == ["report"]
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS) - {"errors", "surgery"}, sorted(folders)


def test_imports_point_down():
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for module, path in modules().items():
        here = wing(module)
        for target in imports(path):
            there = wing(target)
            if there == "package" or here == "package":
                continue
            if there == "entry" and here != "entry" or there == "entry" and target != module:
                wrong.append(f"{module} imports the entry point {target}")
            elif here != "entry" and there != "entry" and rank[there] > rank[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there}), a wing above it")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle():
    graph = {m: {t if t in modules() else t.rsplit(".", 1)[0] for t in imports(p)} & set(modules()) - {m}
             for m, p in modules().items()}
    seen, stack, circles = set(), [], []

    def visit(node):
        if node in stack:
            circles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if not nxt.startswith(node + ".") and not node.startswith(nxt + "."):  # a package and its own modules
                visit(nxt)
        stack.pop()

    for m in graph:
        visit(m)
    assert not circles, circles[:3]
