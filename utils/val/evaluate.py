"""Detection's evaluator: NMS -> matching -> the mAP table (EvalResult), plots and files; `evaluate` runs it."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch

from utils.boxes import scale_boxes, xywh2xyxy
from utils.deploy.predictor import Predictor
from utils.names import names_dict
from utils.nms import non_max_suppression
from utils.task import Criterion
from utils.val.coco import CocoTarget, write_and_score
from utils.val.loop import validate
from utils.val.metrics import ConfusionMatrix, ap_per_class, fitness, match_predictions
from utils.val.outputs import ImageOutputs

LOGGER = logging.getLogger(__name__)

Names = Union[Mapping[int, str], Sequence[str]]
HEADER = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
ROW = "%22s" + "%11i" * 2 + "%11.3g" * 4


@dataclass
class EvalResult:
    """Figures of one validation run. Per-class arrays follow ap_class (classes with labels); maps is (nc,)."""

    mp: float = 0.0
    mr: float = 0.0
    map50: float = 0.0
    map: float = 0.0
    p: np.ndarray = field(default_factory=lambda: np.zeros(0))
    r: np.ndarray = field(default_factory=lambda: np.zeros(0))
    f1: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap50: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap_class: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    nt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (nc,) instances per class
    maps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (nc,) mAP50-95 per class, mean where absent
    losses: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # box, obj, cls (mean per batch)
    speeds: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # pre-process, inference, NMS ms per image
    seen: int = 0
    names: Dict[int, str] = field(default_factory=dict)
    coco: Dict[str, float] | None = None  # COCO mAP50-95 / mAP50 when a COCO evaluator ran

    @property
    def row(self) -> Tuple[float, ...]:
        """results.csv's metric columns: (P, R, mAP50, mAP50-95)."""
        return (self.mp, self.mr, self.map50, self.map)

    @property
    def results(self) -> Tuple[float, ...]:
        """(P, R, mAP50, mAP50-95, val box, val obj, val cls) as YOLOv5's val.run returns them."""
        return (self.mp, self.mr, self.map50, self.map, *self.losses)

    @property
    def fitness(self) -> float:
        """0.1 * mAP50 + 0.9 * mAP50-95."""
        return float(fitness(np.array([self.results[:4]]))[0])

    def per_class(self) -> Dict[str, Dict[str, float]]:
        """{name: {instances, P, R, mAP50, mAP50-95}} for the classes with labels."""
        out = {}
        for i, c in enumerate(self.ap_class.tolist()):
            out[self.names.get(c, str(c))] = {
                "class": c,
                "instances": int(self.nt[c]),
                "P": float(self.p[i]),
                "R": float(self.r[i]),
                "mAP50": float(self.ap50[i]),
                "mAP50-95": float(self.ap[i]),
            }
        return out

    def to_dict(self) -> dict:
        """Every figure as plain JSON types (results.json)."""
        d = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in asdict(self).items()}
        d["names"] = {str(k): v for k, v in self.names.items()}
        d["all"] = {
            "images": self.seen,
            "instances": int(self.nt.sum()),
            "P": self.mp,
            "R": self.mr,
            "mAP50": self.map50,
            "mAP50-95": self.map,
        }
        d["classes"] = self.per_class()
        d["fitness"] = self.fitness
        return d


def _match_image(pred: torch.Tensor, labels: torch.Tensor, im_shape, shape0, ratio_pad, iouv: torch.Tensor):
    """Scale one image's predictions (n, 6) and labels (m, 5) [cls, x, y, w, h] to the original image; match.

    Returns correct (n, t), predn (n, 6) and labelsn (m, 5) [cls, x1, y1, x2, y2], all in original pixels.
    """
    predn = pred.clone()
    scale_boxes(im_shape, predn[:, :4], shape0, ratio_pad)
    tbox = xywh2xyxy(labels[:, 1:5])
    scale_boxes(im_shape, tbox, shape0, ratio_pad)
    labelsn = torch.cat((labels[:, 0:1], tbox), 1)
    correct = match_predictions(predn, labelsn, iouv) if len(labels) else torch.zeros(len(pred), len(iouv)).bool()
    return correct.to(pred.device), predn, labelsn


def _summarise(stats: list, nc: int, names: Dict[int, str], plots: bool, save_dir: Path | None) -> EvalResult:
    """EvalResult from per-image (correct, conf, pred_cls, target_cls) tuples."""
    res = EvalResult(names=names, nt=np.zeros(nc, dtype=int), maps=np.zeros(nc))
    if not stats:
        return res
    correct, conf, pred_cls, target_cls = (torch.cat(x, 0).cpu().numpy() for x in zip(*stats))
    res.nt = np.bincount(target_cls.astype(int), minlength=nc)
    if correct.any():
        draw = plots and save_dir is not None
        _, _, p, r, f1, ap, ap_class, *curves = ap_per_class(correct, conf, pred_cls, target_cls, curves=draw)
        if draw:
            from utils.val.plots import plot_curves  # late: plotting pulls in matplotlib

            plot_curves(curves[0], save_dir, names)
        res.p, res.r, res.f1, res.ap50, res.ap, res.ap_class = p, r, f1, ap[:, 0], ap.mean(1), ap_class
        res.mp, res.mr, res.map50, res.map = (float(x.mean()) for x in (p, r, ap[:, 0], ap.mean(1)))
    res.maps = np.zeros(nc) + res.map
    for i, c in enumerate(res.ap_class):
        res.maps[c] = res.ap[i]
    return res


def _print_table(res: EvalResult, nc: int, per_class: bool, header: bool) -> None:
    if header:
        LOGGER.info(HEADER)
    LOGGER.info(ROW % ("all", res.seen, res.nt.sum(), res.mp, res.mr, res.map50, res.map))
    if res.nt.sum() == 0:
        LOGGER.warning("WARNING: no labels found in the validation set, can not compute metrics without labels")
    if per_class and nc > 1:
        for i, c in enumerate(res.ap_class):
            row = (res.names.get(c, str(c)), res.seen, res.nt[c], res.p[i], res.r[i], res.ap50[i], res.ap[i])
            LOGGER.info(ROW % row)


def _plot_batch(i: int, im, targets, preds, paths, save_dir: Path, names) -> None:
    from utils.val.plots import output_to_target, plot_images

    plot_images(im, targets, paths, save_dir / f"val_batch{i}_labels.jpg", names)
    plot_images(im, output_to_target(preds), paths, save_dir / f"val_batch{i}_pred.jpg", names)


@dataclass(frozen=True)
class EvalOptions:
    """How detection is validated: NMS settings, what is written, what is printed.

    per_class: print a row per class; save_hybrid: NMS also sees the labels (YOLOv5's hybrid labels); json_name:
    the COCO predictions file; coco: category ids and ground truth of that json (default: class indices, scored
    against annotations built from the labels).
    """

    conf_thres: float = 0.001
    iou_thres: float = 0.6
    max_det: int = 300
    single_cls: bool = False
    plots: bool = True
    per_class: bool = False
    save_txt: bool = False
    save_hybrid: bool = False
    save_conf: bool = False
    save_json: bool = False
    json_name: str = "predictions.json"
    coco: CocoTarget | None = None
    header: bool = True


class DetectionEvaluator:
    """Detection's Evaluator: NMS per batch, matching at IoU 0.5:0.95 per image, then the mAP table and files.

    Batches: (imgs (B, 3, H, W), targets (n, 6) [img, cls, x, y, w, h] normalised, paths, shapes). save_dir: where
    plots, labels/*.txt, the COCO json and results.json go (None: nowhere).
    """

    header = HEADER
    post_name = "NMS"

    def __init__(
        self, names: Union[Mapping[int, str], Sequence[str]], save_dir=None, options: EvalOptions = EvalOptions()
    ):
        self.names, self.opt = names_dict(names), options
        self.nc = 1 if options.single_cls else len(self.names)
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.plots = options.plots and self.save_dir is not None
        self.st = _State(torch.linspace(0.5, 0.95, 10), ConfusionMatrix(nc=self.nc) if self.plots else None,
                         ImageOutputs(self.save_dir, options.save_txt, options.save_conf, options.save_json,
                                      options.coco or CocoTarget()))  # fmt: skip
        self.batches = 0

    def postprocess(self, preds: torch.Tensor, batch: Sequence) -> List[torch.Tensor]:
        """(B, N, 5 + nc) -> per image (n, 6) [x1, y1, x2, y2, conf, cls] in letterboxed pixels (hybrid: + labels)."""
        o = self.opt
        lb = []
        if o.save_hybrid:
            targets = _pixel_targets(batch[1].to(preds.device), batch[0].shape[2:])
            lb = [targets[targets[:, 0] == i, 1:] for i in range(preds.shape[0])]
        return non_max_suppression(preds, o.conf_thres, o.iou_thres, labels=lb, multi_label=True,
                                   agnostic=o.single_cls, max_det=o.max_det)  # fmt: skip

    def update(self, results: Sequence[torch.Tensor], batch: Sequence) -> None:
        """Match each image's detections against its labels; plot the first three batches."""
        im, targets, paths, shapes = batch[:4]
        device = results[0].device if len(results) else torch.device("cpu")
        targets = _pixel_targets(targets.to(device), im.shape[2:])
        self.st.iouv = self.st.iouv.to(device)
        for si, pred in enumerate(results):
            labels = targets[targets[:, 0] == si, 1:]
            self.st.add_image(pred, labels, im.shape[2:], shapes[si], Path(paths[si]), self.opt.single_cls)
        if self.plots and self.batches < 3:
            _plot_batch(self.batches, im, targets, results, paths, self.save_dir, self.names)
        self.batches += 1

    def summarize(self, losses: Sequence[float] = (), speeds: Sequence[float] = ()) -> EvalResult:
        """The EvalResult; prints the table and writes plots, the COCO json and results.json into save_dir."""
        st = self.st
        res = _summarise(st.stats, self.nc, self.names, self.plots, self.save_dir)
        res.seen, res.names = st.seen, self.names
        res.speeds = tuple(speeds) or res.speeds
        res.losses = tuple(losses) or res.losses
        _print_table(res, self.nc, per_class=self.opt.per_class, header=self.opt.header)
        if self.save_dir is not None:
            _save_outputs(res, st, self.save_dir, self.names, self.plots, self.opt.json_name)
        return res


def _pixel_targets(targets: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """targets (n, 6) with normalised xywh -> a copy in pixels of an (h, w) image."""
    out = targets.clone()
    out[:, 2:] *= torch.tensor([hw[1], hw[0], hw[1], hw[0]], device=targets.device, dtype=targets.dtype)
    return out


def evaluate(
    predictor: Predictor,
    loader,
    names: Union[Mapping[int, str], Sequence[str]],
    options: EvalOptions = EvalOptions(),
    save_dir: Union[str, Path, None] = None,
    criterion: Criterion | None = None,
    augment: bool = False,
    progress: bool = True,
    speed_shape: Sequence[int] | None = None,
) -> EvalResult:
    """Validate a detector: the shared loop (utils.val.loop.validate) with a DetectionEvaluator -> EvalResult.

    speed_shape: (batch, imgsz) labelling the speed line (0 = from the batches); None prints no speed line.
    """
    header = options.header and not (progress and _tty())
    evaluator = DetectionEvaluator(names, save_dir, replace(options, header=header))
    return validate(predictor, loader, evaluator, criterion, augment, progress, speed_shape)


def _save_outputs(res: EvalResult, st: _State, save_dir: Path, names: Dict[int, str], plots: bool, json_name: str):
    """Confusion matrix plot, COCO json (+ score, which replaces mAP as in YOLOv5), results.json, label count."""
    if plots:
        from utils.val.plots import plot_confusion_matrix  # late: plotting pulls in matplotlib

        plot_confusion_matrix(st.cm.matrix, save_dir, [names.get(i, str(i)) for i in range(st.cm.nc)])
    if st.outputs.save_json:
        out = st.outputs
        res.coco = write_and_score(out.jdict, out.images, out.annotations, names, save_dir / json_name, out.coco)
        if res.coco:
            res.map, res.map50 = res.coco["mAP50-95"], res.coco["mAP50"]
    (save_dir / "results.json").write_text(json.dumps(res.to_dict(), indent=2))
    if st.outputs.save_txt:
        n = len(list((save_dir / "labels").glob("*.txt")))
        LOGGER.info("%d labels saved to %s", n, save_dir / "labels")


def _tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class _State:
    """What the evaluator accumulates: per-image stats, the confusion matrix and side outputs."""

    iouv: torch.Tensor
    cm: ConfusionMatrix | None  # only filled when it is plotted
    outputs: ImageOutputs
    stats: list = field(default_factory=list)
    seen: int = 0

    def add_image(self, pred: torch.Tensor, labels: torch.Tensor, im_shape, shapes, path: Path, single_cls: bool):
        """One image: pred (n, 6) and labels (m, 5) [cls, x, y, w, h] in letterboxed pixels; shapes from the loader."""
        self.seen += 1
        if single_cls:  # the dataloader already does this for its labels; hand-made batches may not
            pred[:, 5] = 0
            labels[:, 0] = 0
        correct, predn, labelsn = _match_image(pred, labels, im_shape, shapes[0], shapes[1], self.iouv)
        self.outputs.add(predn, labelsn, path, shapes[0])
        if pred.shape[0] == 0 and labels.shape[0] == 0:
            return
        if self.cm is not None:
            self.cm.process_batch(predn if len(pred) else None, labelsn if len(pred) else labels[:, 0])
        self.stats.append((correct, pred[:, 4], pred[:, 5], labels[:, 0]))
