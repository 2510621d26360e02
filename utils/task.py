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
    """A validation summary: one results.csv row, a fitness for best.pt, the validation losses, plain-JSON figures."""

    @property
    def row(self) -> Tuple[float, ...]: ...  # the metric columns of results.csv, in the task's `metric_names` order

    @property
    def fitness(self) -> float: ...

    @property
    def losses(self) -> Tuple[float, ...]: ...  # mean validation losses in `loss_names` order; () without a criterion

    def to_dict(self) -> Dict[str, Any]: ...


class Evaluator(Protocol):
    """Accumulates one validation pass: `postprocess` and `update` per batch, then `summarize` once.

    The shared loop (utils/val/loop.py: validate) calls `postprocess(preds, batch)` on the predictor's output (timed
    as the post-processing step; detection: NMS), `update(results, batch)` with what it returned, and at the end
    `summarize(losses, speeds)` with what the loop measured: the mean validation losses in the task's `loss_names`
    order (empty without a criterion) and ms per image for pre-process, inference and post-process.
    `header` is the progress bar's title and `post_name` names the post-processing step in the speed line.
    """

    header: str
    post_name: str

    def postprocess(self, preds: Any, batch: Sequence[Any]) -> Sequence[Any]: ...

    def update(self, results: Sequence[Any], batch: Sequence[Any]) -> None: ...

    def summarize(self, losses: Sequence[float] = (), speeds: Sequence[float] = ()) -> Metrics: ...


class Predictor(Protocol):
    """Every backend (PyTorch, TorchScript, ONNX, OpenVINO, ...) behind one face (utils/deploy/predictor.py).

    forward(im (B, 3, H, W) float) -> the task's raw predictions only (detect: (B, N, 5 + nc); segment: that with
    nm mask coefficients per row, and protos (B, nm, h, w); classify: (B, nc) scores). Nothing else is returned, so
    no caller has to guess what it was given. `prepare(im)` casts a uint8 or float batch to its device, dtype and
    layout; imgsz / batch are a static export's input size and batch (None when free); meta is the file's metadata.
    """

    task: str
    format: str
    names: Dict[int, str]
    stride: int
    imgsz: Tuple[int, int] | None
    batch: int | None
    fp16: bool
    dynamic: bool
    device: torch.device
    meta: Dict[str, Any]

    def prepare(self, im: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, im: torch.Tensor, augment: bool = False) -> Any: ...


@dataclass(frozen=True)
class Task:
    """One task's parts. The engine calls only these; each takes only what it needs (config: a TrainConfig).

    Training (utils/train/run.py), in the order the run calls them:
    - `build_model(config, resume_ckpt)` -> the nn.Module to train (weights from --weights/--cfg, or the resumed
      run's fp32 weights), on the CPU, with `.names`, `.nc` and `.stride` set
    - `hyp_for_model(hyp, model, nc, imgsz)` -> the hyperparameters the criterion uses (detect rescales its loss
      gains for the number of levels, classes and the image size; other tasks may return hyp unchanged)
    - `train_loader(config, imgsz, stride, start_epoch)` -> (loader, dataset); batches are tuples (imgs uint8, ...)
    - `val_loader(config, imgsz, stride)` -> loader (rank 0 only)
    - `check_data(dataset, model, config, imgsz)`: a new run's look at its labels (detect: AutoAnchor, labels.jpg)
    - `criterion(model, hyp)` -> Criterion; `loss_names` name its items (results.csv's train/ and val/ columns)
    - `evaluator(names, save_dir, plots=..., per_class=..., single_cls=...)` -> Evaluator; `metric_names` name
      its Metrics.row (results.csv's metrics/ columns)
    - `plot_batch(imgs, batch, path, names)`: the first training batches as pictures
    - `image_weights(dataset, nc, metrics)` -> (n,) sampling weights for --image-weights, or None when the task
      has no such option
    Prediction (utils/deploy/):
    - `postprocess(raw predictions, **options)` -> per-image results (detect: (n, 6) boxes after NMS)
    - `annotate(image, result, names, ...)` -> the image with the result drawn (and txt rows for --save-txt)
    Layout: `channels_last=True` lets the engine train and validate a CPU model in channels-last order (oneDNN's
    convolutions are faster); the task's criterion and evaluator must then accept channels-last outputs (no
    `.view` on them). Off unless a task says so.
    """

    name: str
    loss_names: Tuple[str, ...]
    metric_names: Tuple[str, ...]
    build_model: Callable[[Any, Mapping[str, Any] | None], torch.nn.Module]
    hyp_for_model: Callable[[Mapping[str, Any], torch.nn.Module, int, int], Mapping[str, Any]]
    train_loader: Callable[..., Tuple[Any, Any]]
    val_loader: Callable[..., Any]
    check_data: Callable[..., None]
    criterion: Callable[[torch.nn.Module, Mapping[str, float]], Criterion]
    evaluator: Callable[..., Evaluator]
    plot_batch: Callable[..., None]
    image_weights: Callable[..., Any] | None
    postprocess: Callable[..., list]
    annotate: Callable[..., Any]
    channels_last: bool = False
