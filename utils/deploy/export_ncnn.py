"""NCNN export with pnnx (from the ONNX graph): `<stem>_ncnn_model/` holding model.ncnn.param/.bin + metadata.yaml."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from utils.deploy.runtimes.meta import need, write_meta_yaml
from utils.errors import UserError

LOGGER = logging.getLogger(__name__)


def export_ncnn(onnx_file: Path, weights: Path, meta: dict, half: bool = False) -> Path:
    """pnnx converts onnx_file (static NCHW) to NCNN; fp16 weights with half. Returns the folder."""
    pnnx = need("pnnx", "NCNN export", "pnnx")
    folder = weights.with_name(f"{weights.stem}_ncnn_model")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shape = ",".join(str(int(s)) for s in [meta["batch"], 3, *meta["imgsz"]])
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.onnx"
        shutil.copyfile(onnx_file, src)
        cmd = [pnnx.EXEC_PATH, str(src), f"inputshape=[{shape}]", f"fp16={int(half)}",
               f"ncnnparam={folder / 'model.ncnn.param'}", f"ncnnbin={folder / 'model.ncnn.bin'}",
               f"pnnxparam={Path(tmp) / 'model.pnnx.param'}", f"pnnxbin={Path(tmp) / 'model.pnnx.bin'}",
               f"pnnxpy={Path(tmp) / 'model_pnnx.py'}", f"pnnxonnx={Path(tmp) / 'model.pnnx.onnx'}",
               f"ncnnpy={Path(tmp) / 'model_ncnn.py'}"]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    if r.returncode or not (folder / "model.ncnn.bin").is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"NCNN export failed: pnnx exited {r.returncode}: {tail[0]}")
    write_meta_yaml(meta, folder / "metadata.yaml")
    return folder
