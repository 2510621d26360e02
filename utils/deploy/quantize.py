"""Static int8 quantisation calibrated on --data images: ONNX (onnxruntime QDQ) and OpenVINO (NNCF).

The Detect head (its 1x1 convs and the decode: grid, anchor, sigmoid, concat of pixel boxes with 0-1 scores) stays
float: one int8 scale cannot hold both ranges, and int8 logits move the boxes. In ONNX, FLA's attention (FLA and
FLABlock modules) stays float too: its normaliser divides by an int8-rounded sum, which made the attention's output
noise (-24 dB SQNR against float on BCCD). Only the other layers are quantised.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Sequence

import numpy as np

from utils.deploy.runtimes.meta import need

LOGGER = logging.getLogger(__name__)


def _head_nodes(model_proto, head: str) -> list:
    """Names of the ONNX nodes of the Detect module (exported under '/model/model.<i>/'), its 1x1 convs included:
    int8 steps of their logits moved the decoded boxes enough to cost 0.12 mAP50-95 on coco8."""
    return [n.name for n in model_proto.graph.node if n.name.startswith(head)]


FLOAT_MODULES = ("FLA", "FLABlock")  # attention modules whose ONNX nodes stay float in --int8
PERCENTILE = 99.999  # activation range: this percentile of |x| over the calibration images


def onnx_scope(module_name: str) -> str:
    """The ONNX node-name prefix of a submodule of the exported model: 'model.2.m.0' -> '/model/model.2/m/m.0/'
    (torch.onnx names a list element by its container's name, a dot and its index)."""
    parts, prev = [], ""
    for p in module_name.split("."):
        parts.append(f"{prev}.{p}" if p.isdigit() else p)
        prev = p
    return "/" + "/".join(parts) + "/"


def float_scopes(model) -> List[str]:
    """ONNX node-name prefixes of model's FLA / FLABlock modules (outermost only), kept float by quantize_onnx."""
    names = [n for n, m in model.named_modules() if type(m).__name__ in FLOAT_MODULES]
    return [onnx_scope(n) for n in names if not any(n.startswith(f"{o}.") for o in names)]


def quantize_onnx(onnx_file: Path, out: Path, calib: np.ndarray, head_index: int, keep: Sequence[str] = ()) -> Path:
    """QDQ int8 (per-channel weights, uint8 activations) of onnx_file -> out; metadata is carried over. The Detect
    head's nodes and those under the prefixes keep (float_scopes: FLA's attention) stay float."""
    import onnx

    q = need("onnxruntime.quantization", "ONNX int8 export", "onnxruntime")

    class Reader(q.CalibrationDataReader):
        """One image at a time, in strides (set_range): the histogram calibrator holds a stride's activations."""

        def __init__(self):
            self.set_range(0, len(calib))

        def __len__(self) -> int:
            return len(calib)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.it = iter(calib[i : i + 1] for i in range(start_index, min(end_index, len(calib))))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"images": x}

    proto = onnx.load(str(onnx_file))
    exclude = _head_nodes(proto, f"/model/model.{head_index}/")
    exclude += [n.name for n in proto.graph.node if n.name.startswith(tuple(keep))] if keep else []
    # reduce_range (7-bit weights): onnxruntime's u8 x s8 kernels saturate on x86 CPUs without VNNI (this AMD EPYC),
    # which cost 0.12 mAP50-95 on coco8 (yolov5n, 256 px: float 0.4146, full range 0.2937, reduce_range 0.4095).
    # Activation ranges: the 99.999th percentile of |x| (not min/max): outliers no longer set the int8 step (a 10-epoch
    # yolov5n-fla on BCCD at 320 px: 0.4479 -> 0.4703 mAP50-95, .pt 0.4691; docs/export-formats.md)
    stride = max(d for d in range(1, 11) if len(calib) % d == 0)  # images per calibration pass (memory)
    kw = dict(quant_format=q.QuantFormat.QDQ, per_channel=True, reduce_range=True, nodes_to_exclude=exclude,
              activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)  # fmt: skip
    try:
        extra = {"CalibPercentile": PERCENTILE, "CalibStridedMinMax": stride}
        q.quantize_static(str(onnx_file), str(out), Reader(), calibrate_method=q.CalibrationMethod.Percentile,
                          extra_options=extra, **kw)  # fmt: skip
    except ValueError as e:  # numpy cannot bin a tensor whose range is below float32's resolution (2048 bins)
        LOGGER.warning("ONNX int8: percentile calibration failed (%s); calibrating on min/max instead", e)
        q.quantize_static(str(onnx_file), str(out), Reader(), calibrate_method=q.CalibrationMethod.MinMax, **kw)
    qp = onnx.load(str(out))
    del qp.metadata_props[:]
    qp.metadata_props.extend(proto.metadata_props)
    onnx.save(qp, str(out))
    return out


def quantize_openvino(folder: Path, calib: np.ndarray, head_index: int) -> Path:
    """NNCF post-training int8 of the IR in folder (rewritten in place); the Detect head stays float. The full bias
    correction (not the fast one) keeps yolov5n on coco8 at 256 px within 0.012 mAP50-95 of float (fast: 0.024)."""
    ov = need("openvino", "OpenVINO int8 export", "openvino")
    nncf = need("nncf", "OpenVINO int8 export", "nncf")
    xml = next(folder.glob("*.xml"))
    model = ov.Core().read_model(str(xml))
    dataset = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
    ignored = nncf.IgnoredScope(patterns=[f".*/model\\.{head_index}/.*"], validate=False)
    qm = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.MIXED, ignored_scope=ignored,
                       subset_size=len(calib), fast_bias_correction=False)  # fmt: skip
    tmp = xml.with_name(f"{xml.stem}.int8.xml")  # not over the files read_model holds mapped (a bus error)
    ov.save_model(qm, str(tmp), compress_to_fp16=False)
    del model, qm
    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    tmp.replace(xml)
    return folder
