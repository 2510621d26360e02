"""The metadata every export carries (stride, names, task, imgsz, batch, ...): write it, read it, apply it."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Dict

import yaml

from utils.errors import UserError
from utils.names import names_dict, names_list
from utils.yaml_io import read_yaml_mapping

TF_MODULES = ("tensorflow", "onnx2tf", "tensorflowjs", "tf_keras")


def need(module: str, what: str, pip: str):
    """Import module, or a one-line UserError naming the package that is missing.

    TensorFlow is imported after torch._dynamo (and its triton): the other order segfaults in triton's import.
    """
    if module.split(".")[0] in TF_MODULES:
        import torch._dynamo  # noqa: F401
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{what} needs the {pip} package, which is not installed: pip install {pip}") from e


def write_meta_yaml(meta: Dict[str, Any], file: Path) -> Path:
    """meta as YAML with names as {index: name} (YOLOv5's metadata.yaml shape)."""
    data = {**meta, "names": names_dict(meta.get("names"))}
    with open(file, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return file


def read_meta_yaml(file: Path) -> Dict[str, Any]:
    """metadata.yaml of an export; {} when the file is absent."""
    return read_yaml_mapping(file, "export metadata", "stride and names") if file.is_file() else {}


def apply_meta(predictor, meta: Dict[str, Any]) -> None:
    """Set stride, names, task, imgsz, batch and dynamic of a Predictor from an export's metadata."""
    predictor.meta = dict(meta)
    predictor.stride = int(meta.get("stride", 32))
    predictor.names = names_dict(names_list(meta.get("names")))
    predictor.task = str(meta.get("task", "detect"))
    predictor.dynamic = bool(meta.get("dynamic", False))
    size = meta.get("imgsz")
    predictor.imgsz = None if predictor.dynamic or not size else tuple(int(s) for s in size)
    predictor.batch = None if predictor.dynamic else meta.get("batch")
