"""The project's import graph, read with `ast` (nothing is imported): files, edges, circles and upward imports.

Layers, lowest first: leaves (`utils/*.py`) < models and data (`models/`, `utils/data/`) < deploy < val < train <
task folders (`utils/segment/`, `utils/classify/`) < scripts (the CLIs, `benchmarks/`, `tools/`). An import may go
to its own layer or below, never above, and one task folder never imports another;
`python tools/import_graph.py` prints the counts and any violation.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "utils")
LAYERS = {"leaf": 0, "models": 1, "data": 1, "deploy": 2, "val": 3, "train": 4, "task": 5, "script": 6}
WINGS = ("data", "deploy", "val", "train")
TASK_FOLDERS = ("segment", "classify")  # detection's parts are the wings' own (its Task: utils/train/tasks.py)


def module_name(path: Path, root: Path = ROOT) -> str:
    """'utils/val/metrics.py' -> 'utils.val.metrics'; a package's __init__ -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer a module belongs to (see the module docstring)."""
    parts = module.split(".")
    if parts[0] == "models":
        return "models"
    if parts[0] == "utils" and len(parts) >= 2 and parts[1] in WINGS:
        return parts[1]
    if parts[0] == "utils" and len(parts) >= 2 and parts[1] in TASK_FOLDERS:
        return "task"
    return "leaf" if parts[0] == "utils" else "script"


def task_folder(module: str) -> str | None:
    """'segment' for utils.segment and its modules (likewise classify); None for anything else."""
    parts = module.split(".")
    return parts[1] if parts[0] == "utils" and len(parts) >= 2 and parts[1] in TASK_FOLDERS else None


def project_files(root: Path = ROOT) -> List[Path]:
    """Every project .py file except tests (which may import anything)."""
    skip = {"tests", "runs", ".git"}
    return sorted(p for p in root.rglob("*.py") if not (set(p.relative_to(root).parts) & skip))


def _resolve(name: str, known: Set[str]) -> str | None:
    """The longest known module that `name` (a dotted import target) names, or None for a foreign module."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in known:
            return cand
    return None


def imports_of(path: Path, known: Set[str]) -> Set[str]:
    """Project modules imported anywhere in path (module level or inside functions)."""
    out: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for t in targets:
            m = _resolve(t, known)
            if m is not None and m.split(".")[0] in PACKAGES:
                out.add(m)
    return out


def build_graph(root: Path = ROOT) -> Dict[str, Set[str]]:
    """{module: project modules it imports}, package __init__ files that import nothing left out of the edges."""
    files = project_files(root)
    known = {module_name(p, root) for p in files}
    graph = {module_name(p, root): imports_of(p, known) for p in files}
    for m, deps in graph.items():
        deps.discard(m)
        # `from utils.val.metrics import x` also names the package `utils.val`: keep the deepest target only
        for d in list(deps):
            if any(o != d and o.startswith(d + ".") for o in deps):
                deps.discard(d)
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def upward_imports(graph: Dict[str, Set[str]]) -> List[Tuple[str, str]]:
    """(importer, imported) pairs where the imported module sits in a higher layer, or in another task folder."""
    return sorted(
        (m, d)
        for m, deps in graph.items()
        for d in deps
        if LAYERS[layer_of(d)] > LAYERS[layer_of(m)]
        or (task_folder(d) and task_folder(m) and task_folder(d) != task_folder(m))
    )


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root to read")
    opt = ap.parse_args(argv)
    graph = build_graph(opt.root)
    edges = sum(len(d) for d in graph.values())
    cycles, upward = find_cycles(graph), upward_imports(graph)
    print(f"{len(graph)} files, {edges} edges, {len(cycles)} circles, {len(upward)} upward imports")
    for c in cycles:
        print("circle: " + " <-> ".join(c))
    for m, d in upward:
        print(f"upward: {m} ({layer_of(m)}) imports {d} ({layer_of(d)})")
    return 1 if cycles or upward else 0


if __name__ == "__main__":
    sys.exit(main())
