"""What a task (detect, segment, classify) plugs into the shared engine: its parts, as protocols.

The engine (the run loop and `train_one_epoch` in utils/train/, the validation loop in utils/val/, the predictor in
utils/deploy/) only ever calls these methods; it never asks which task it runs. A task folder (utils/segment/,
utils/classify/) provides one object of each kind and a `Task` that bundles them. Detection is the first task.

Batches are tuples whose first item is the image batch; the rest is the task's own (detection: targets (n, 6),
paths, shapes; segmentation adds masks; classification: labels (B,)). Only the task's parts read the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, NamedTuple, Protocol, Sequence, Tuple

import torch


class LossOutput(NamedTuple):
    """What a criterion returns: `total` is the scalar to backpropagate (already scaled by the batch size, as YOLOv5
    does), `items` the detached (k,) parts in the order of the task's `loss_names`."""

    total: torch.Tensor
    items: torch.Tensor


class Criterion(Protocol):
    """Scores raw training outputs against a batch's targets; never changes the model."""

    def __call__(self, preds: Any, batch: Sequence[Any]) -> LossOutput: ...


class Metrics(Protocol):
    """A validation summary: one results.csv row, a fitness for best.pt, and plain-JSON figures."""

    @property
    def row(self) -> Tuple[float, ...]: ...  # the metric columns of results.csv, in the task's `metric_names` order

    @property
    def fitness(self) -> float: ...

    def to_dict(self) -> Dict[str, Any]: ...


class Evaluator(Protocol):
    """Accumulates one validation pass: `update` per batch with the postprocessed predictions, then `summarize`."""

    def update(self, results: Sequence[Any], batch: Sequence[Any]) -> None: ...

    def summarize(self) -> Metrics: ...


class Predictor(Protocol):
    """Every backend (PyTorch, TorchScript, ONNX, OpenVINO, ...) behind one face.

    forward(im (B, 3, H, W) float) -> the task's raw predictions only (detect: (B, N, 5 + nc); segment: that with
    nm mask coefficients per row, and protos (B, nm, h, w); classify: (B, nc) scores). Nothing else is returned, so
    no caller has to guess what it was given.
    """

    task: str
    names: Dict[int, str]
    stride: int
    fp16: bool
    dynamic: bool

    def __call__(self, im: torch.Tensor) -> Any: ...


@dataclass(frozen=True)
class Task:
    """One task's parts. Each factory takes only what it needs; the engine passes the frozen config's fields.

    - `criterion(model, hyp)` -> Criterion
    - `evaluator(names, save_dir, plots, ...)` -> Evaluator
    - `postprocess(raw predictions, **options)` -> per-image results (detect: (n, 6) boxes after NMS)
    - `annotate(image, result, names, ...)` -> the image with the result drawn (and txt rows for --save-txt)
    """

    name: str
    loss_names: Tuple[str, ...]
    metric_names: Tuple[str, ...]
    criterion: Callable[[torch.nn.Module, Mapping[str, float]], Criterion]
    evaluator: Callable[..., Evaluator]
    postprocess: Callable[..., list]
    annotate: Callable[..., Any]
