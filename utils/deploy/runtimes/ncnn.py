"""NCNN runtime: a <stem>_ncnn_model/ folder (model.ncnn.param, model.ncnn.bin, metadata.yaml) via the ncnn package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from utils.deploy.predictor import Predictor, register_backend, task_output
from utils.deploy.runtimes.meta import apply_meta, need, read_meta_yaml
from utils.errors import CheckpointError, UserError


@register_backend("_ncnn_model")
class NCNNBackend(Predictor):
    """NCNN on the CPU in fp32 (fp16 storage off, so the numbers follow PyTorch); images run one at a time."""

    format = "ncnn"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, threads: int | None = None, **_):
        super().__init__(device)
        ncnn = need("ncnn", "running NCNN weights", "ncnn")
        param, weights = f / "model.ncnn.param", f / "model.ncnn.bin"
        if not param.is_file() or not weights.is_file():
            raise UserError(f"NCNN model folder {f} needs model.ncnn.param and model.ncnn.bin")
        apply_meta(self, read_meta_yaml(f / "metadata.yaml"))
        self.net = ncnn.Net()
        self.net.opt.use_fp16_storage = self.net.opt.use_fp16_packed = self.net.opt.use_fp16_arithmetic = False
        if threads:
            self.net.opt.num_threads = int(threads)
        if self.net.load_param(str(param)) or self.net.load_model(str(weights)):
            raise CheckpointError(f"cannot load NCNN model {f}")
        self.ncnn, self.batch = ncnn, None  # per-image runs: any batch size

    def run(self, im: torch.Tensor) -> torch.Tensor:
        x = im.float().cpu().numpy()
        names = self.net.output_names()  # pnnx names them out0, out1, ... in the ONNX graph's order
        out = []
        for i in range(x.shape[0]):
            with self.net.create_extractor() as ex:
                ex.input(self.net.input_names()[0], self.ncnn.Mat(np.ascontiguousarray(x[i])).clone())
                out.append([np.array(ex.extract(n)[1]) for n in names])
        ys = [torch.from_numpy(np.stack([o[k] for o in out])).to(self.device) for k in range(len(names))]
        return task_output(ys)
