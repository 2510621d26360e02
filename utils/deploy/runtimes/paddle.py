"""PaddlePaddle runtime (paddle.inference): a <stem>_paddle_model/ folder (inference_model/model.json +
model.pdiparams and the metadata yaml), ours or official YOLOv5's, or its .pdiparams file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Tuple

import torch

from utils.deploy.predictor import Predictor, register_backend, task_output
from utils.deploy.runtimes.meta import apply_meta, need, read_meta_yaml
from utils.errors import CheckpointError, UserError


def need_paddle(module: str, what: str, pip: str = "paddlepaddle"):
    """need(module, ...) for paddle / x2paddle, whose first import configures the root logger (a stderr handler,
    level INFO): the root logger's handlers and level are put back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return need(module, what, pip)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def paddle_files(f: Path) -> Tuple[Path, Path]:
    """(model.json, model.pdiparams) of a paddle model folder (searched below it) or of a .pdiparams file."""
    if f.suffix == ".pdiparams":
        graph, params = f.with_suffix(".json"), f
    else:
        graph, params = next(iter(sorted(f.rglob("*.json"))), None), next(iter(sorted(f.rglob("*.pdiparams"))), None)
    if graph is None or params is None or not graph.is_file() or not params.is_file():
        raise UserError(f"PaddlePaddle model {f} needs a model.json and a model.pdiparams (inference_model/)")
    return graph, params


def paddle_meta(f: Path) -> Optional[Path]:
    """The metadata yaml of a paddle model: <stem>.yaml in the *_paddle_model folder (official's name), or None."""
    folder = f if f.is_dir() else next((p for p in f.parents if p.name.endswith("_paddle_model")), f.parent)
    found = sorted(folder.glob("*.yaml"))
    return found[0] if found else None


@register_backend("_paddle_model", ".pdiparams")
class PaddleBackend(Predictor):
    """paddle.inference on the CPU (oneDNN off: its PIR kernels reject some X2Paddle attributes), or CUDA when the
    device is a GPU and paddle was built with it. Static input shape, as exported."""

    format = "paddle"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, threads: int | None = None, **_):
        super().__init__(device)
        pdi = need_paddle("paddle.inference", "running PaddlePaddle weights")
        graph, params = paddle_files(f)
        meta = paddle_meta(f)
        apply_meta(self, read_meta_yaml(meta) if meta else {})
        config = pdi.Config(str(graph), str(params))
        paddle = need_paddle("paddle", "running PaddlePaddle weights")
        if self.device.type == "cuda" and paddle.is_compiled_with_cuda():
            config.enable_use_gpu(256, self.device.index or 0)
        else:
            config.disable_gpu()
            self.device = torch.device("cpu")
        config.disable_mkldnn()
        config.disable_glog_info()
        if threads:
            config.set_cpu_math_library_num_threads(int(threads))
        try:
            self.predictor = pdi.create_predictor(config)
        except (RuntimeError, ValueError, OSError) as e:
            raise CheckpointError(f"cannot load PaddlePaddle model {f}: {str(e).strip().splitlines()[-1]}") from e
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.outputs = self.predictor.get_output_names()

    def run(self, im: torch.Tensor) -> torch.Tensor:
        """im (B, 3, H, W) -> the exported graph's outputs, in order (detect: pred; segment: pred, protos)."""
        x = im.float().cpu().numpy()
        self.input.reshape(list(x.shape))
        self.input.copy_from_cpu(x)
        self.predictor.run()
        return task_output([torch.from_numpy(self.predictor.get_output_handle(n).copy_to_cpu()) for n in self.outputs])
