"""The import graph: no circle, no upward import (tools/import_graph.py's layers), metrics free of plotting."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_import_circle():
    ig = _graph_tool()
    assert ig.find_cycles(ig.build_graph()) == []


def test_no_upward_import():
    ig = _graph_tool()
    assert ig.upward_imports(ig.build_graph()) == []


def test_graph_tool_finds_a_circle_and_an_upward_import(tmp_path):
    ig = _graph_tool()
    (tmp_path / "utils" / "val").mkdir(parents=True)
    (tmp_path / "utils" / "a.py").write_text("from utils.b import x\n")
    (tmp_path / "utils" / "b.py").write_text("def f():\n    import utils.a\n")
    (tmp_path / "utils" / "c.py").write_text("from utils.val.metrics import fitness\n")
    (tmp_path / "utils" / "val" / "metrics.py").write_text("")
    graph = ig.build_graph(tmp_path)
    assert ig.find_cycles(graph) == [["utils.a", "utils.b"]]
    assert ig.upward_imports(graph) == [("utils.c", "utils.val.metrics")]
    assert ig.main(["--root", str(tmp_path)]) == 1


def test_metrics_imports_no_plotting_library():
    code = "import sys, utils.val.metrics; print([m for m in ('matplotlib', 'utils.val.plots') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_registry_knows_no_concrete_module():
    text = (ROOT / "models" / "registry.py").read_text()
    assert "from models" not in text and "import models" not in text


def test_task_folders_import_the_wings_never_the_reverse(tmp_path):
    ig = _graph_tool()
    for folder in ("segment", "classify", "train"):
        (tmp_path / "utils" / folder).mkdir(parents=True)
    (tmp_path / "utils" / "train" / "run.py").write_text("from utils.segment.task import SEGMENT\n")
    (tmp_path / "utils" / "segment" / "task.py").write_text("from utils.train.run import x\nSEGMENT = 1\n")
    (tmp_path / "utils" / "segment" / "loss.py").write_text("import utils.train.run\n")
    (tmp_path / "utils" / "classify" / "task.py").write_text("from utils.segment.loss import y\n")
    graph = ig.build_graph(tmp_path)
    assert ig.layer_of("utils.segment.task") == "task" and ig.layer_of("utils.classify") == "task"
    assert ig.upward_imports(graph) == [
        ("utils.classify.task", "utils.segment.loss"),  # one task folder never imports another
        ("utils.train.run", "utils.segment.task"),  # a wing never imports a task folder
    ]
