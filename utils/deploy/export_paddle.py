"""PaddlePaddle export with X2Paddle, in official YOLOv5's layout: `<stem>_paddle_model/` holding
inference_model/model.json + model.pdiparams (the static graph the runtime loads), X2Paddle's model.pdparams and
x2paddle_code.py (the dynamic-graph code it generated), and `<stem>.yaml` with the metadata.

X2Paddle translates the TorchScript trace of the model (PyTorch -> Paddle ops), not the ONNX graph. Its usage
report to Baidu's server is switched off: the program never touches the network.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import sys
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from utils.deploy.export_onnx import ExportWrapper
from utils.deploy.runtimes.meta import write_meta_yaml
from utils.deploy.runtimes.paddle import need_paddle
from utils.errors import UserError

LOGGER = logging.getLogger(__name__)

GENERATED = "x2paddle_code"  # the module X2Paddle writes into the folder and imports from there


def paddle_folder(weights: Path) -> Path:
    """<stem>_paddle_model/ beside weights (official's name)."""
    return weights.with_name(f"{weights.stem}_paddle_model")


@contextlib.contextmanager
def _x2paddle_scope(folder: Path):
    """X2Paddle prints its progress, puts the folder on sys.path to import the generated code, and calls exit(0) when
    paddle.jit.save fails: its output goes to the log, sys.path and sys.modules are put back, an exit is an error."""
    path, out = list(sys.path), _Captured()
    log = logging.getLogger("x2paddle.convert")  # it logs its progress at INFO, with a survey link
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield out
    except SystemExit as e:
        raise UserError(f"PaddlePaddle export failed: X2Paddle gave up: {out.last_line(e)}") from e
    finally:
        log.setLevel(level)
        sys.path[:] = path
        sys.modules.pop(GENERATED, None)
        if out.getvalue().strip():
            LOGGER.debug("x2paddle: %s", out.getvalue().strip())


class _Captured(io.StringIO):
    """X2Paddle's printed output."""

    def last_line(self, e: BaseException) -> str:
        lines = [s.strip(" =") for s in self.getvalue().splitlines() if s.strip(" =")]
        return lines[-1] if lines else (str(e) or type(e).__name__)

    def unsupported(self) -> str:
        """The ops X2Paddle listed as not supported ('aten::x, aten::y'), or ''."""
        ops = [s.strip(" =") for s in self.getvalue().splitlines() if s.strip(" =").startswith(("aten::", "prim::"))]
        return ", ".join(ops)


def export_paddle(model: nn.Module, im: torch.Tensor, weights: Path, meta: dict) -> Path:
    """X2Paddle converts the trace of model (fused, eval, head in export mode) on im (B, 3, H, W) to a static Paddle
    graph for that input shape. Returns the folder."""
    need_paddle("paddle", "PaddlePaddle export")
    convert = need_paddle("x2paddle.convert", "PaddlePaddle export", "x2paddle")
    from utils.deploy.x2paddle_ops import register

    register()
    folder = paddle_folder(weights)
    shutil.rmtree(folder, ignore_errors=True)
    LOGGER.info("paddle: converting with X2Paddle %s ...", getattr(sys.modules.get("x2paddle"), "__version__", "?"))
    with _x2paddle_scope(folder) as out:
        try:
            convert.pytorch2paddle(module=ExportWrapper(model), save_dir=str(folder), jit_type="trace",
                                   input_examples=[im.float()], disable_feedback=True)  # fmt: skip
        except Exception as e:  # X2Paddle raises a bare Exception for unsupported ops, and whatever its code meets
            ops = out.unsupported()
            why = f"ops it cannot map: {ops}" if ops else (str(e).strip().splitlines() or [type(e).__name__])[-1]
            raise UserError(f"PaddlePaddle export failed: X2Paddle: {why}") from e
    if not (folder / "inference_model" / "model.pdiparams").is_file():
        raise UserError(f"PaddlePaddle export failed: X2Paddle wrote no inference_model/model.pdiparams in {folder}")
    write_meta_yaml(meta, folder / f"{weights.stem}.yaml")
    return folder
