"""One inference interface over .pt (ours or official), .onnx (onnxruntime), .torchscript (ours only), OpenVINO."""

from __future__ import annotations

import ast
import json
import logging
import warnings
import zipfile
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn

from utils.errors import UserError
from utils.names import names_list

LOGGER = logging.getLogger(__name__)

EXPORT_FORMAT = "yolov5-fla"  # the 'format' entry our exported files carry in their metadata
SUFFIXES = (".pt", ".onnx", ".torchscript", ".xml")  # .xml: OpenVINO, also given as its *_openvino_model folder


def parse_meta_value(text: str):
    """One metadata string -> value: JSON (our exports) or a Python literal (official YOLOv5 writes str(dict)).

    ast.literal_eval accepts literals only (numbers, strings, lists, dicts, ...): nothing is executed.
    """
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"not JSON nor a Python literal: {text[:60]!r}") from e


def onnx_meta(meta: dict, path: Path) -> Tuple[int, list]:
    """(stride, names) from an ONNX custom_metadata_map; unreadable entries are a UserError naming the file."""
    try:
        stride = int(parse_meta_value(meta["stride"])) if "stride" in meta else 32
        names = names_list(parse_meta_value(meta["names"])) if "names" in meta else []
    except (ValueError, TypeError, UserError) as e:
        raise UserError(f"cannot read the metadata of ONNX model {path}: {e}") from e
    if stride <= 0:
        raise UserError(f"cannot read the metadata of ONNX model {path}: stride {stride} is not positive")
    return stride, names


def read_torchscript_meta(path: Union[str, Path]) -> dict:
    """config.txt JSON of a TorchScript archive, read with zipfile before anything is deserialised."""
    try:
        with zipfile.ZipFile(path) as z:
            entry = next((n for n in z.namelist() if n.endswith("/extra/config.txt")), None)
            meta = json.loads(z.read(entry)) if entry else {}
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"cannot read TorchScript file {path}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise UserError(
            f"{path} was not exported by YOLOv5-FLA export.py; TorchScript files contain code, so only "
            "files exported with our metadata are loaded"
        )
    return meta


def _openvino_file(f: Path) -> Path:
    """An OpenVINO *_openvino_model folder -> its .xml; any other path unchanged."""
    if f.suffix == ".xml" or f.is_dir():
        from utils.deploy.openvino import openvino_xml

        return openvino_xml(f) or f
    return f


class Ensemble(nn.ModuleList):
    """Several .pt models run on the same image; predictions concatenated along the boxes dim (YOLOv5 NMS ensemble)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) -> (B, sum N_i, 5 + nc)."""
        return torch.cat([_pred(m(x)) for m in self], 1)


def _pred(y) -> torch.Tensor:
    """The (B, N, 5 + nc) prediction from an eval-mode model output (tensor or (pred, features))."""
    return y[0] if isinstance(y, (list, tuple)) else y


def _task_output(y):
    """A model's or an exported graph's outputs -> pred (B, N, 5 + nc), or (pred (B, N, 5 + nc + nm), protos
    (B, nm, h, w)) for segmentation (found by a 4-d second output, in either order)."""
    if isinstance(y, (list, tuple)) and len(y) >= 2 and isinstance(y[1], torch.Tensor):
        a, b = y[0], y[1]
        if b.ndim == 4 and a.ndim == 3:
            return a.float(), b.float()
        if a.ndim == 4 and b.ndim == 3:
            return b.float(), a.float()
    return _pred(y).float()


class DetectMultiBackend(nn.Module):
    """Run .pt / .onnx / .torchscript detectors alike: forward(im (B, 3, H, W) float 0-1) -> pred (B, N, 5 + nc).

    Attributes: stride (int), names (list), pt / onnx / jit flags, dynamic (bool), imgsz ((h, w) of a static export,
    else None), batch (static batch size or None), fp16. TorchScript is code: only files exported by our export.py
    (our 'format' in config.txt) are loaded, and they should still come from a source you trust.
    """

    def __init__(
        self,
        weights: Union[str, Path, Sequence[Union[str, Path]]],
        device: Union[str, torch.device] = "cpu",
        fp16: bool = False,
        cfg=None,
        fuse: bool = True,
    ):
        super().__init__()
        files = [Path(w) for w in weights] if isinstance(weights, (list, tuple)) else [Path(weights)]
        files = [_openvino_file(f) for f in files]
        if not files:
            raise UserError("no weights given")
        for f in files:
            if f.suffix not in SUFFIXES:
                raise UserError(f"unsupported weights format '{f.suffix}' for {f}; use one of {', '.join(SUFFIXES)}")
            if not f.is_file():
                raise UserError(f"weights file not found: {f}")
        suffix = files[0].suffix
        if len(files) > 1 and any(f.suffix != ".pt" for f in files):
            raise UserError("an ensemble of several weights works with .pt files only")
        self.device = torch.device(device)
        self.pt, self.onnx, self.jit = suffix == ".pt", suffix == ".onnx", suffix == ".torchscript"
        self.xml = suffix == ".xml"
        self.dynamic, self.imgsz, self.batch, self.fp16 = True, None, None, bool(fp16)
        self.stride, self.names = 32, []
        self.task = "detect"  # "segment" when the model has a Segment head (its forward returns (pred, protos))
        if self.pt:
            self._init_pt(files, cfg, fuse)
        elif self.onnx:
            self._init_onnx(files[0])
        elif self.xml:
            self._init_openvino(files[0])
        else:
            self._init_jit(files[0])
        self.nc = len(self.names)

    def _init_pt(self, files: List[Path], cfg, fuse: bool) -> None:
        from models.load import load_model  # local: model code is only needed for .pt

        models = [load_model(f, device=self.device, fuse=fuse, cfg=cfg) for f in files]
        for m in models:
            if self.fp16:
                m.half()
        self.model = models[0] if len(models) == 1 else Ensemble(models)
        self.stride = int(max(int(max(m.stride)) for m in models))
        self.names = list(models[0].names)
        self.task = "segment" if hasattr(models[0].model[-1], "nm") else "detect"
        if len(models) > 1 and self.task == "segment":
            raise UserError("an ensemble of segmentation models is not supported")
        if len(models) > 1:
            LOGGER.info("Ensemble created with %s", ", ".join(str(f) for f in files))

    def _init_onnx(self, f: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise UserError("running .onnx weights needs onnxruntime: pip install onnxruntime") from e
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(f), providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise UserError(f"cannot load ONNX model {f}: {str(e).splitlines()[0]}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        self.stride, self.names = onnx_meta(meta, f)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        if len(self.output_names) >= 2 and len(self.session.get_outputs()[1].shape) == 4:
            self.task = "segment"
        self.fp16 = inp.type == "tensor(float16)"
        b, _, h, w = inp.shape
        self.dynamic = not all(isinstance(d, int) for d in (h, w))
        self.imgsz = None if self.dynamic else (h, w)
        self.batch = b if isinstance(b, int) else None

    def _init_openvino(self, f: Path) -> None:
        """OpenVINO IR on the CPU (whatever the device); fp16 asks for the plugin's fastest precision (bf16 on AMX)."""
        from utils.deploy.openvino import OpenVINOSession

        self.session = OpenVINOSession(f, precision=None if self.fp16 else "f32")
        self.stride, self.names = self.session.stride, names_list(self.session.names)
        self.dynamic, self.imgsz, self.batch = self.session.dynamic, self.session.imgsz, self.session.batch
        self.fp16 = self.session.fp16
        self.task = "segment" if len(self.session.compiled.outputs) > 1 else "detect"

    def _init_jit(self, f: Path) -> None:
        meta = read_torchscript_meta(f)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still works
                self.model = torch.jit.load(str(f), map_location=self.device)
        except RuntimeError as e:
            raise UserError(f"cannot load TorchScript model {f}: {str(e).splitlines()[0]}") from e
        self.stride = int(meta.get("stride", 32))
        self.names = names_list(meta.get("names"))
        self.task = "segment" if meta.get("task") == "segment" else "detect"
        self.dynamic = bool(meta.get("dynamic", False))
        self.fp16 = bool(meta.get("half", False))
        size = meta.get("imgsz")
        self.imgsz = None if self.dynamic or not size else tuple(size)
        self.batch = None if self.dynamic else meta.get("batch")

    def forward(self, im: torch.Tensor) -> torch.Tensor:
        """im (B, 3, H, W) float 0-1 -> pred (B, N, 5 + nc): xywh pixels, objectness, class scores; for a
        segmentation model (pred (B, N, 5 + nc + nm), protos (B, nm, h, w))."""
        im = im.half() if self.fp16 else im.float()
        if self.onnx:
            ys = self.session.run(self.output_names, {self.input_name: im.cpu().numpy()})
            return _task_output([torch.from_numpy(y).to(self.device) for y in ys])
        if self.xml:
            y = self.session(im.cpu().numpy())
            ys = [torch.from_numpy(t).to(self.device) for t in (y if isinstance(y, tuple) else (y,))]
            return _task_output(ys)
        return _task_output(self.model(im.to(self.device)))

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
