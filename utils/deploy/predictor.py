"""One predictor interface over every backend: an in-memory model, .pt, and the exported formats of backends.py.

`utils.deploy.backends.load_predictor(weights, device, fp16)` picks the backend class registered for the file's
suffix (or folder name ending) and returns a `Predictor`; `ModelPredictor(model)` wraps a model already in memory
(training's EMA, the hub API's model). Every predictor is called the same way, `predictor(im)` with im
(B, 3, H, W) float 0-1, and returns the task's predictions only (detection: (B, N, 5 + nc) float). A new format is
one small subclass, in a module that backends.py imports:

    @register_backend(".tflite")
    class TFLiteBackend(Predictor):
        format = "tflite"
        def __init__(self, f, device, fp16, **_): ...   # set stride, names, dynamic, imgsz, batch, fp16, meta
        def run(self, im): ...                           # im on self.device, cast to the input dtype -> predictions
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable, Dict, List, Tuple, Type, Union

import torch
import torch.nn as nn

from utils.names import names_dict

LOGGER = logging.getLogger(__name__)

BACKENDS: Dict[str, Type[Predictor]] = {}  # file suffix or folder-name ending -> backend class


def register_backend(*suffixes: str) -> Callable[[Type[Predictor]], Type[Predictor]]:
    """Class decorator: files ending in one of suffixes ('.onnx', or '_openvino_model' for a folder) load with it."""

    def add(cls: Type[Predictor]) -> Type[Predictor]:
        for s in suffixes:
            BACKENDS[s] = cls
        return cls

    return add


def first_output(y: Any) -> torch.Tensor:
    """The prediction of an eval-mode model output: YOLOv5 models return (pred, per-level features)."""
    return y[0] if isinstance(y, (list, tuple)) else y


def is_seg_output(y: Any) -> bool:
    """True for a segmentation output: (pred (B, N, no), protos (B, nm, h, w), ...) or an export's outputs in either
    order."""
    if not isinstance(y, (list, tuple)) or len(y) < 2 or not all(isinstance(t, torch.Tensor) for t in y[:2]):
        return False
    return {y[0].ndim, y[1].ndim} == {3, 4}


def task_output(y: Any):
    """A model's or an exported graph's outputs -> the task's predictions: pred (B, N, 5 + nc), or (pred (B, N,
    5 + nc + nm), protos (B, nm, h, w)) for segmentation."""
    if is_seg_output(y):
        return (y[0], y[1]) if y[0].ndim == 3 else (y[1], y[0])
    return first_output(y)


def to_float(y: Any):
    """float() of a tensor or of each tensor of a tuple."""
    return tuple(t.float() for t in y) if isinstance(y, tuple) else y.float()


class Predictor(nn.Module):
    """A model ready to predict, whatever holds it. forward(im) -> predictions only.

    Attributes: task ('detect', or 'segment': predictions are then (pred, protos)), format ('pytorch', 'onnx',
    'torchscript', 'openvino', ...), names {index: name}, stride (int), imgsz ((h, w) of a static export, else
    None), batch (static batch size or None), fp16 (inputs are cast to half), dynamic (any input size that is a
    stride multiple), device, meta (the file's metadata dict).
    """

    task = "detect"
    format = "pytorch"

    def __init__(self, device: Union[str, torch.device] = "cpu"):
        super().__init__()
        self.device = torch.device(device)
        self.names: Dict[int, str] = {}
        self.stride, self.imgsz, self.batch = 32, None, None
        self.fp16, self.dynamic, self.nhwc = False, True, False
        self.meta: Dict[str, Any] = {}

    # format flags, YOLOv5's DetectMultiBackend spelling
    pt = property(lambda self: self.format == "pytorch")
    onnx = property(lambda self: self.format == "onnx")
    jit = property(lambda self: self.format == "torchscript")
    xml = property(lambda self: self.format == "openvino")

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def rect(self) -> bool:
        """True when inputs may be rectangular (letterboxed to the image's own stride-multiple shape)."""
        return self.pt or self.dynamic

    def run(self, im: torch.Tensor) -> torch.Tensor:
        """The backend's forward pass on im (B, 3, H, W), already cast and on self.device -> predictions."""
        raise NotImplementedError

    def forward(self, im: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """im (B, 3, H, W) float 0-1 -> predictions (float). augment: test-time flips and scales (PyTorch only)."""
        im = self.prepare(im)
        if augment:
            out = self.augmented(im)
            if out is not None:
                return out.float()
            LOGGER.warning("WARNING: --augment needs PyTorch (.pt) weights; running without it")
        return to_float(self.run(im))

    def prepare(self, im: torch.Tensor) -> torch.Tensor:
        """Cast an image batch (uint8 0-255 or float 0-1) to this predictor's device, dtype and memory layout."""
        scale = im.dtype == torch.uint8
        im = im.to(self.device, non_blocking=True)
        im = im.half() if self.fp16 else im.float()
        im = im / 255 if scale else im
        return im.contiguous(memory_format=torch.channels_last) if self.nhwc else im

    def augmented(self, im: torch.Tensor) -> torch.Tensor | None:
        """Test-time augmented predictions; None when this backend has no augmented forward (exported files)."""
        return None

    def modules_for_hooks(self) -> List[nn.Module]:
        """The PyTorch models behind this predictor (one, or an ensemble's members); [] for exported files."""
        return []

    def use_channels_last(self) -> bool:
        """Put a CPU PyTorch model in channels-last order (oneDNN convolutions take ~0.8x the time; same outputs).

        True when done: prepare() then makes inputs channels-last too.
        """
        return False

    def warmup(self, imgsz: Tuple[int, int, int, int] = (1, 3, 640, 640)) -> None:
        """One forward pass on zeros to initialise lazy kernels (skipped on CPU, as in YOLOv5)."""
        if self.device.type != "cpu":
            self.forward(torch.zeros(*imgsz, device=self.device))

    def check_input(self, shape: Tuple[int, ...]) -> str | None:
        """A message when a static export cannot take an input of shape (B, 3, H, W); None when it fits."""
        if self.imgsz is not None and tuple(shape[2:]) != tuple(self.imgsz):
            return f"{shape[2]}x{shape[3]} input, but the model was exported for {self.imgsz[0]}x{self.imgsz[1]}"
        if self.batch is not None and shape[0] != self.batch:
            return f"batch {shape[0]}, but the model was exported for batch {self.batch}"
        return None


class Ensemble(nn.ModuleList):
    """Several models run on the same image; predictions concatenated along the boxes dim (YOLOv5 NMS ensemble)."""

    def forward(self, x: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """x (B, 3, H, W) -> (B, sum N_i, 5 + nc)."""
        return torch.cat([first_output(m(x, augment=augment) if augment else m(x)) for m in self], 1)


class ModelPredictor(Predictor):
    """A PyTorch model in memory (eval mode, or an Ensemble) as a Predictor.

    fp16 on CUDA runs a half copy (the caller's fp32 weights, e.g. training's EMA, are never rounded). names and
    stride default to the model's own. The model's (pred, features) output is reduced to pred here, once.
    """

    def __init__(self, model: nn.Module, device=None, fp16: bool = False, names=None, stride=None):
        params = next(iter(model.parameters()), None)
        super().__init__(device if device is not None else (params.device if params is not None else "cpu"))
        members = list(model) if isinstance(model, Ensemble) else [model]
        self.fp16 = bool(fp16) and self.device.type != "cpu"
        self.model = copy.deepcopy(model).half() if self.fp16 else model
        self.names = names_dict(names if names is not None else members[0].names)
        strides = [int(torch.as_tensor(m.stride).max()) for m in members] if stride is None else [int(stride)]
        self.stride = max(strides)
        from models.yolo import DetectionModel, Segment

        if isinstance(members[0], DetectionModel) and isinstance(members[0].model[-1], Segment):
            if len(members) > 1:
                from utils.errors import UserError

                raise UserError("an ensemble of segmentation models is not supported")
            self.task = "segment"

    def members(self) -> List[nn.Module]:
        return list(self.model) if isinstance(self.model, Ensemble) else [self.model]

    def run(self, im: torch.Tensor) -> torch.Tensor:
        return task_output(self.model(im))

    def run_with_raw(self, im: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        """(predictions, the model's raw per-level outputs) for a validation loss; im from prepare().

        Segmentation: ((pred, protos), (levels, protos)), the second as the model returns in training."""
        out = self.model(im)
        if self.task == "segment":
            return (out[0].float(), out[1].float()), (out[2], out[1])
        if isinstance(out, torch.Tensor):  # a classifier: its logits are both the prediction and the raw output
            return out.float(), out
        return out[0].float(), out[1]

    def augmented(self, im: torch.Tensor) -> torch.Tensor | None:
        from models.yolo import DetectionModel

        members = self.members()
        if not all(isinstance(m, DetectionModel) for m in members):
            return None
        return torch.cat([m(im, augment=True)[0].float() for m in members], 1)

    def modules_for_hooks(self) -> List[nn.Module]:
        return self.members()

    def use_channels_last(self) -> bool:
        if self.device.type != "cpu":
            return False
        self.model.to(memory_format=torch.channels_last)
        self.nhwc = True
        return True
