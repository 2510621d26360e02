"""The file backends of the predictor: .pt (ours or official), .onnx (onnxruntime), .torchscript (ours), OpenVINO.

Each is a `Predictor` registered for its suffix; `utils.deploy.predictor.load_predictor` picks one.
"""

from __future__ import annotations

import ast
import json
import logging
import warnings
import zipfile
from pathlib import Path
from typing import List, Sequence, Tuple, Type, Union

import torch

from utils.deploy.onnx_check import check_onnx_session, check_prediction, check_stride
from utils.deploy.predictor import BACKENDS, Ensemble, ModelPredictor, Predictor, register_backend, task_output
from utils.errors import CheckpointError, UserError
from utils.names import names_dict, names_list

LOGGER = logging.getLogger(__name__)

EXPORT_FORMAT = "yolov5-fla"  # the 'format' entry our exported files carry in their metadata


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
        stride = parse_meta_value(meta["stride"]) if "stride" in meta else 32
        names = names_list(parse_meta_value(meta["names"])) if "names" in meta else []
    except (ValueError, TypeError, OverflowError, UserError) as e:
        raise CheckpointError(f"cannot read the metadata of ONNX model {path}: {e}") from e
    return check_stride(stride, f"ONNX model {path}"), names


def read_torchscript_meta(path: Union[str, Path]) -> dict:
    """config.txt JSON of a TorchScript archive, read with zipfile before anything is deserialised."""
    try:
        with zipfile.ZipFile(path) as z:
            entry = next((n for n in z.namelist() if n.endswith("/extra/config.txt")), None)
            meta = json.loads(z.read(entry)) if entry else {}
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read TorchScript file {path}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise UserError(
            f"{path} was not exported by YOLOv5-FLA export.py; TorchScript files contain code, so only "
            "files exported with our metadata are loaded"
        )
    return meta


@register_backend(".pt")
class TorchFileBackend(ModelPredictor):
    """.pt weights (ours or official YOLOv5), or several of them as an Ensemble; cfg rebuilds them in another yaml."""

    def __init__(self, f: Union[Path, List[Path]], device: torch.device, fp16: bool = False, cfg=None, fuse=True, **_):
        from models.load import load_model  # local: model code is only needed for .pt

        files = f if isinstance(f, list) else [f]
        models = [load_model(w, device=device, fuse=fuse, cfg=cfg) for w in files]
        model = models[0] if len(models) == 1 else Ensemble(models)
        super().__init__(model, device=device, fp16=fp16, names=models[0].names)
        if len(models) > 1:
            LOGGER.info("Ensemble created with %s", ", ".join(str(w) for w in files))


@register_backend(".onnx")
class OnnxBackend(Predictor):
    """An ONNX file through onnxruntime (CUDA when the device is CUDA and the provider is installed)."""

    format = "onnx"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, **_):
        super().__init__(device)
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
            raise CheckpointError(f"cannot load ONNX model {f}: {str(e).splitlines()[0]}") from e
        self.meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.stride, names = onnx_meta(self.meta, f)
        check_onnx_session(self.session, names, f)
        self.file = f
        self.names = names_dict(names)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        if len(self.output_names) > 1 and len(self.session.get_outputs()[1].shape) == 4:
            self.task = "segment"  # official and our seg exports: output0 predictions, output1 prototypes
        self.fp16 = inp.type == "tensor(float16)"
        b, _, h, w = inp.shape
        self.dynamic = not all(isinstance(d, int) for d in (h, w))
        self.imgsz = None if self.dynamic else (h, w)
        self.batch = b if isinstance(b, int) else None

    def run(self, im: torch.Tensor) -> torch.Tensor:
        ys = self.session.run(self.output_names, {self.input_name: im.cpu().numpy()})
        ys[0] = check_prediction(ys[0], self.file)
        return task_output([torch.from_numpy(y).to(self.device) for y in ys])


@register_backend(".xml", "_openvino_model")
class OpenVINOBackend(Predictor):
    """OpenVINO IR on the CPU (whatever the device); fp16 asks for the plugin's fastest precision (bf16 on AMX)."""

    format = "openvino"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, **_):
        from utils.deploy.openvino import OpenVINOSession, openvino_xml

        super().__init__(device)
        xml = (openvino_xml(f) or f) if f.is_dir() else f
        self.session = OpenVINOSession(xml, precision=None if fp16 else "f32")
        self.stride, self.names = self.session.stride, names_dict(names_list(self.session.names))
        self.dynamic, self.imgsz, self.batch = self.session.dynamic, self.session.imgsz, self.session.batch
        self.fp16 = self.session.fp16
        self.task = "segment" if len(self.session.compiled.outputs) > 1 else "detect"

    def run(self, im: torch.Tensor) -> torch.Tensor:
        y = self.session(im.cpu().numpy())
        return task_output([torch.from_numpy(t).to(self.device) for t in (y if isinstance(y, tuple) else (y,))])


@register_backend(".torchscript")
class TorchScriptBackend(Predictor):
    """A TorchScript file exported by our export.py (its config.txt is read before anything is deserialised)."""

    format = "torchscript"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, **_):
        super().__init__(device)
        self.meta = read_torchscript_meta(f)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still works
                self.model = torch.jit.load(str(f), map_location=self.device)
        except RuntimeError as e:
            raise CheckpointError(f"cannot load TorchScript model {f}: {str(e).splitlines()[0]}") from e
        self.stride = check_stride(self.meta.get("stride", 32), f"TorchScript model {f}")
        self.names = names_dict(names_list(self.meta.get("names")))
        self.task = "segment" if self.meta.get("task") == "segment" else "detect"
        self.dynamic = bool(self.meta.get("dynamic", False))
        self.fp16 = bool(self.meta.get("half", False))
        size = self.meta.get("imgsz")
        self.imgsz: Tuple[int, int] | None = None if self.dynamic or not size else tuple(size)
        self.batch = None if self.dynamic else self.meta.get("batch")

    def run(self, im: torch.Tensor) -> torch.Tensor:
        return task_output(self.model(im))


def _register_runtimes() -> None:
    """Import the runtime modules of the other exported formats; each registers its suffixes when imported."""
    import utils.deploy.runtimes.apple  # noqa: F401
    import utils.deploy.runtimes.ncnn  # noqa: F401
    import utils.deploy.runtimes.paddle  # noqa: F401
    import utils.deploy.runtimes.tensorrt  # noqa: F401
    import utils.deploy.runtimes.tf  # noqa: F401


def _backend_for(f: Path) -> Type[Predictor]:
    _register_runtimes()
    for suffix, cls in BACKENDS.items():
        if f.name.endswith(suffix):
            return cls
    known = ", ".join(sorted(s for s in BACKENDS if s.startswith(".")))
    raise UserError(f"unsupported weights format '{f.suffix}' for {f}; use one of {known}")


def load_predictor(
    weights: Union[str, Path, Sequence[Union[str, Path]]],
    device: Union[str, torch.device] = "cpu",
    fp16: bool = False,
    cfg=None,
    fuse: bool = True,
) -> Predictor:
    """The predictor for --weights: a file or folder (its suffix picks the backend), or several .pt (an ensemble).

    cfg (.pt only): build that model yaml and transfer the weights into it. fp16: half inputs (and weights).
    """
    files = [Path(w) for w in weights] if isinstance(weights, (list, tuple)) else [Path(weights)]
    if not files:
        raise UserError("no weights given")
    classes = [_backend_for(f) for f in files]
    for f in files:
        if not f.exists():
            raise UserError(f"weights file not found: {f}")
    if len(files) > 1 and any(f.suffix != ".pt" for f in files):
        raise UserError("an ensemble of several weights works with .pt files only")
    return classes[0](files if len(files) > 1 else files[0], device=torch.device(device), fp16=fp16, cfg=cfg, fuse=fuse)


DetectMultiBackend = load_predictor  # YOLOv5's name for the same entry point
