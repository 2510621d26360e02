"""OpenVINO IR: write the `<stem>_openvino_model/` folder (xml, bin, metadata yaml) and run it on the CPU."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

import numpy as np
import yaml

from utils.errors import CheckpointError, UserError
from utils.names import names_dict
from utils.yaml_io import read_yaml_mapping

LOGGER = logging.getLogger(__name__)

FOLDER_SUFFIX = "_openvino_model"  # YOLOv5's folder name: yolov5s.pt -> yolov5s_openvino_model/yolov5s.xml


def import_openvino():
    """The openvino module, or a one-line UserError saying how to install it."""
    try:
        import openvino
    except ImportError as e:
        raise UserError("OpenVINO export and inference need the openvino package: pip install openvino") from e
    return openvino


def openvino_folder(weights: Union[str, Path]) -> Path:
    """yolov5s.pt -> yolov5s_openvino_model (beside the weights)."""
    weights = Path(weights)
    return weights.with_name(weights.stem + FOLDER_SUFFIX)


def openvino_xml(path: Union[str, Path]) -> Optional[Path]:
    """The .xml of an OpenVINO model given its folder or the .xml itself; None when path is neither."""
    path = Path(path)
    if path.suffix == ".xml":
        return path
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if not found:
            raise UserError(f"{path} holds no OpenVINO .xml model")
        return found[0]
    return None


def export_openvino(onnx_file: Path, folder: Path, meta: dict, half: bool = False) -> Path:
    """Convert an exported ONNX file to IR in folder as <stem>.xml/.bin plus <stem>.yaml (stride, names, our flags).

    half compresses the weights to FP16 (the CPU plugin still computes in its own precision). Returns folder.
    """
    ov = import_openvino()
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder.name[: -len(FOLDER_SUFFIX)] if folder.name.endswith(FOLDER_SUFFIX) else folder.name
    model = ov.convert_model(str(onnx_file))
    ov.save_model(model, str(folder / f"{stem}.xml"), compress_to_fp16=half)
    data = {**meta, "names": names_dict(meta.get("names"))}  # YOLOv5 writes names as {index: name}
    with open(folder / f"{stem}.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return folder


class OpenVINOSession:
    """A compiled OpenVINO CPU model: __call__(im (B, 3, H, W) float32 ndarray) -> (B, N, 5 + nc) ndarray.

    Attributes from the IR and its yaml: stride, names (raw yaml value), dynamic, imgsz ((h, w) or None), batch
    (static batch or None), fp16 (the input takes float16). precision 'f32' (default: the same numbers as PyTorch)
    or None (the plugin's fastest, bf16 on CPUs with AMX/AVX512-BF16); threads None = all cores.
    """

    def __init__(self, xml: Path, threads: Optional[int] = None, precision: Optional[str] = "f32"):
        ov = import_openvino()
        if not xml.is_file() or not xml.with_suffix(".bin").is_file():
            raise UserError(f"OpenVINO model needs both {xml.name} and {xml.with_suffix('.bin').name} in {xml.parent}")
        core = ov.Core()
        try:
            model = core.read_model(str(xml), str(xml.with_suffix(".bin")))
        except RuntimeError as e:
            raise CheckpointError(f"cannot load OpenVINO model {xml}: {str(e).splitlines()[0]}") from e
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        meta_file = xml.with_suffix(".yaml")
        meta = read_yaml_mapping(meta_file, "OpenVINO metadata", "stride and names") if meta_file.is_file() else {}
        self.stride, self.names = int(meta.get("stride", 32)), meta.get("names")
        inp = model.inputs[0]
        shape = inp.get_partial_shape()
        self.fp16 = inp.get_element_type() == ov.Type.f16
        self.dynamic = not (shape[2].is_static and shape[3].is_static)
        self.imgsz = None if self.dynamic else (shape[2].get_length(), shape[3].get_length())
        self.batch = shape[0].get_length() if shape[0].is_static else None

    def __call__(self, im: np.ndarray):
        """im (B, 3, H, W) -> pred (B, N, 5 + nc), or a tuple of every output for a model with several (segmentation:
        pred, protos); copies, since the request reuses its output buffers."""
        self.request.infer({0: im})
        n = len(self.compiled.outputs)
        outs = tuple(np.array(self.request.get_output_tensor(i).data, copy=True) for i in range(n))
        return outs[0] if n == 1 else outs
