"""Restricted unpickler for official YOLOv5 .pt files: builds tensors and inert stubs, never imports pickled classes."""

from __future__ import annotations

import collections
import logging
import pickle
import types
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from utils.errors import CheckpointError, UnsafeCheckpointError, UserError
from utils.names import names_list

LOGGER = logging.getLogger(__name__)

# Module prefixes whose classes are replaced by inert stubs (YOLOv5's own classes, torch layers, options objects).
# torchvision.transforms: official classifiers pickle their inference transforms (model.transforms).
STUB_PREFIXES = ("models.", "utils.", "torch.nn.modules.", "torchvision.transforms.")
STUB_GLOBALS = {("argparse", "Namespace"), ("types", "SimpleNamespace")}


class Stub:
    """An inert stand-in for a pickled class instance: it only records the attributes the pickle sets."""

    stub_module = ""
    stub_name = ""

    def __init__(self, *args, **kwargs):
        self.__dict__["_stub_args"] = args

    def __setstate__(self, state: Any) -> None:
        """BUILD opcode: state is a dict, or (dict, slot dict) as pickle protocol 2 writes it."""
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
            if isinstance(slots, dict):
                self._record(slots)
        if isinstance(state, dict):
            self._record(state)
        elif state is not None:
            self.__dict__["_stub_state"] = state

    def _record(self, attrs: dict) -> None:
        """Store attributes; dunder names (e.g. an instance '__setstate__' for a later BUILD) are dropped."""
        self.__dict__.update({k: v for k, v in attrs.items() if not (isinstance(k, str) and k.startswith("__"))})

    def __repr__(self) -> str:
        return f"Stub({self.stub_module}.{self.stub_name})"


def _reconstructor(cls: Any, base: Any, state: Any) -> Stub:
    """Safe copyreg._reconstructor: only builds stubs (protocol 0/1 pickles of objects)."""
    if not (isinstance(cls, type) and issubclass(cls, Stub)) or base is not object:
        raise UnsafeCheckpointError(f"checkpoint refused: copyreg._reconstructor called on {cls!r}")
    return cls.__new__(cls)


def _stub_getattr(obj: Any, name: Any) -> Any:
    """Safe getattr for pickles of a method reference (official Segment keeps `self.detect = Detect.forward`):
    only on a stub class, and it returns another inert stub class, never a real attribute."""
    if not (isinstance(obj, type) and issubclass(obj, Stub)) or not isinstance(name, str):
        raise UnsafeCheckpointError(f"checkpoint refused: getattr called on {obj!r}")
    return type(
        f"{obj.stub_name}.{name}", (Stub,), {"stub_module": obj.stub_module, "stub_name": f"{obj.stub_name}.{name}"}
    )


def _path_from_parts(*parts: Any) -> str:
    """pathlib paths are rebuilt as plain strings."""
    if not all(isinstance(p, str) for p in parts):
        raise UnsafeCheckpointError("checkpoint refused: pathlib path built from non-string parts")
    return str(Path(*parts)) if parts else "."


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    """Safe _codecs.encode: protocol-2 pickles store bytes as latin-1 text."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise UnsafeCheckpointError("checkpoint refused: _codecs.encode used for something other than bytes")
    return text.encode("latin1")


def _numpy_global(module: str, name: str) -> Any:
    """Plain numpy arrays, dtypes and scalars (an interrupted official run stores best_fitness as an ndarray).

    Nothing else from numpy (e.g. random states) is allowed.
    """
    if module not in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        return None
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
        if subtype is not np.ndarray:
            raise UnsafeCheckpointError(f"checkpoint refused: numpy array of type {subtype!r}")
        return _reconstruct(subtype, shape, dtype)

    table = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        (module, "_reconstruct"): reconstruct if module != "numpy" else None,
        (module, "scalar"): scalar if module != "numpy" else None,
    }
    return table.get((module, name))


def _plain_global(module: str, name: str) -> Any:
    """The few real callables a checkpoint may use: tensor rebuilders and plain containers. None when not allowed."""
    allowed = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("pathlib", "Path"): _path_from_parts,
        ("pathlib", "PosixPath"): _path_from_parts,
        ("pathlib", "WindowsPath"): _path_from_parts,
        ("_codecs", "encode"): _latin1_encode,
    }
    for builtins_name in ("builtins", "__builtin__"):
        allowed[(builtins_name, "getattr")] = _stub_getattr
        for ctor in (set, frozenset, slice, list, dict, tuple, int, float, bool, complex, str, bytes, bytearray):
            allowed[(builtins_name, ctor.__name__)] = ctor
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    return allowed.get((module, name)) or _numpy_global(module, name)


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class returns tensor rebuilders, plain containers or stubs, and refuses the rest."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stub_classes: dict = {}

    def find_class(self, module: str, name: str) -> Any:
        """Resolve GLOBAL module.name without importing anything."""
        obj = _plain_global(module, name)
        if obj is not None:
            return obj
        if module.startswith(STUB_PREFIXES) or (module, name) in STUB_GLOBALS:
            key = (module, name)
            if key not in self._stub_classes:
                attrs = {"stub_module": module, "stub_name": name}
                self._stub_classes[key] = type(name, (Stub,), attrs)
            return self._stub_classes[key]
        raise UnsafeCheckpointError(
            f"checkpoint refused: it asks for '{module}.{name}', which is not a tensor or a plain container "
            "(the file may be malicious; only load weights from sources you trust)"
        )


def _restricted_load(file: Any, **kwargs) -> Any:
    """pickle.load with the restricted unpickler (used by torch.load for legacy-format files)."""
    return RestrictedUnpickler(file, **kwargs).load()


# A pickle-module-like object for torch.load(pickle_module=...): it exposes Unpickler and load only.
PICKLE_MODULE = types.SimpleNamespace(Unpickler=RestrictedUnpickler, load=_restricted_load, __name__="safe_pickle")


def restricted_torch_load(path: Union[str, Path]) -> Any:
    """torch.load through the restricted unpickler: tensors, plain containers and stubs only."""
    try:
        return torch.load(str(path), map_location="cpu", pickle_module=PICKLE_MODULE, weights_only=False)
    except UserError:
        raise
    except Exception as e:  # anything else the unpickler or torch raises on a damaged file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from e


def _tensor(t: torch.Tensor) -> torch.Tensor:
    """A plain, detached CPU tensor; fp16 -> fp32."""
    t = t.detach().cpu()
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t.clone()


def stub_state_dict(module: Stub, prefix: str = "") -> dict:
    """Walk a stub tree's _parameters / _buffers / _modules into a state_dict with nn.Module key names."""
    out: dict = {}
    d = module.__dict__
    skip = d.get("_non_persistent_buffers_set") or set()
    for k, v in (d.get("_parameters") or {}).items():
        if isinstance(v, torch.Tensor):
            out[prefix + k] = _tensor(v)
    for k, v in (d.get("_buffers") or {}).items():
        if isinstance(v, torch.Tensor) and k not in skip:
            out[prefix + k] = _tensor(v)
    for k, child in (d.get("_modules") or {}).items():
        if isinstance(child, Stub):
            out.update(stub_state_dict(child, f"{prefix}{k}."))
    return out


def to_plain(obj: Any) -> Any:
    """Recursively turn stubs (Namespace-like), tuples, sets and tensors into weights_only-loadable values."""
    if isinstance(obj, Stub):
        return {k: to_plain(v) for k, v in obj.__dict__.items() if not k.startswith("_")}
    if isinstance(obj, dict):
        return {to_plain(k) if not isinstance(k, (str, int)) else k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _tensor(obj)
    if isinstance(obj, np.generic) or (isinstance(obj, np.ndarray) and obj.size == 1 and obj.dtype != object):
        return obj.item()
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(obj))
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def model_stub_to_dict(model: Stub) -> dict:
    """A pickled YOLOv5 Model stub -> {'yaml', 'state_dict', 'names', 'stride'} (fp32 tensors)."""
    d = model.__dict__
    yaml = to_plain(d.get("yaml"))
    if yaml is None and model.stub_name == "ClassificationModel":  # official classifiers keep no yaml
        from utils.stub_yaml import classifier_yaml_from_stub

        yaml = classifier_yaml_from_stub(model)
    if not isinstance(yaml, dict):
        raise CheckpointError("checkpoint model has no yaml dict; it is not a YOLOv5 detection model")
    stride = d.get("stride")
    stride = [float(s) for s in stride.tolist()] if isinstance(stride, torch.Tensor) else to_plain(stride)
    nc = yaml.get("nc") if isinstance(yaml.get("nc"), int) and not isinstance(yaml.get("nc"), bool) else 0
    return {
        "yaml": yaml,
        "state_dict": stub_state_dict(model),
        "names": names_list(d.get("names"), nc),  # a list; newer YOLOv5 an {index: name} dict
        "stride": stride,
    }


def load_official(path: Union[str, Path]) -> dict:
    """Read an official YOLOv5 checkpoint (a pickle of nn.Modules) safely; returns the normalised checkpoint dict.

    Keys as ARCHITECTURE.md: model/ema are {'yaml','state_dict','names','stride'} dicts (or None); the official
    optimizer state is dropped (its parameter order belongs to YOLOv5's code).
    """
    raw = restricted_torch_load(path)
    if isinstance(raw, Stub):  # torch.save(model) of a bare model
        raw = {"model": raw}
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} is not a YOLOv5 checkpoint (top level is {type(raw).__name__})")
    models = {k: raw.get(k) for k in ("model", "ema")}
    if not any(isinstance(m, Stub) for m in models.values()):
        raise CheckpointError(f"{path} is not a YOLOv5 checkpoint (no 'model' entry)")
    converted = {k: model_stub_to_dict(m) if isinstance(m, Stub) else None for k, m in models.items()}
    if converted["model"] is None:  # official best.pt after strip keeps the EMA in 'model'; be lenient otherwise
        converted["model"], converted["ema"] = converted["ema"], None
    source = models["model"] if isinstance(models["model"], Stub) else models["ema"]
    opt = to_plain(raw.get("opt")) if isinstance(raw.get("opt"), (dict, Stub)) else {}
    hyp = opt.get("hyp") if isinstance(opt.get("hyp"), dict) else to_plain(source.__dict__.get("hyp"))  # unscaled first
    best = to_plain(raw.get("best_fitness"))
    return {
        "model": converted["model"],
        "ema": converted["ema"],
        "optimizer": None,
        "epoch": int(raw.get("epoch", -1) if isinstance(raw.get("epoch"), int) else -1),
        "best_fitness": float(best) if isinstance(best, (int, float)) else 0.0,
        "opt": opt,
        "hyp": hyp if isinstance(hyp, dict) else {},
        "scaler": None,
        "rng": {},
        "date": str(raw.get("date") or ""),
        "format": "yolov5-official",
    }
