"""The validation loop shared by val.py and train.py: model -> NMS -> matching -> mAP table, plots and files."""

from __future__ import annotations

import copy
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch

from utils.boxes import scale_boxes, xywh2xyxy, xyxy2xywh
from utils.deploy.predict import channels_last
from utils.deploy.tta import augmented_forward
from utils.names import names_dict
from utils.nms import non_max_suppression
from utils.torch_utils import time_sync
from utils.val.coco import CocoTarget, coco_rows, write_and_score
from utils.val.metrics import ConfusionMatrix, ap_per_class, fitness, match_predictions

LOGGER = logging.getLogger(__name__)

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


class _Outputs:
    """Per-image side outputs: label .txt files, COCO predictions and the COCO ground truth built from the labels."""

    def __init__(self, save_dir: Path | None, save_txt: bool, save_conf: bool, save_json: bool, coco: CocoTarget):
        self.save_dir, self.save_txt, self.save_conf, self.save_json = save_dir, save_txt, save_conf, save_json
        self.coco = coco
        self.jdict: List[dict] = []
        self.images: List[dict] = []
        self.annotations: List[dict] = []
        if save_txt and save_dir is not None:
            (save_dir / "labels").mkdir(parents=True, exist_ok=True)

    def add(self, predn: torch.Tensor, labelsn: torch.Tensor, path: Path, shape: Sequence[int]) -> None:
        """Every image: predn (n, 6), labelsn (m, 5) [cls, x1, y1, x2, y2] in pixels of the original image (h0, w0)."""
        if self.save_txt and self.save_dir is not None and len(predn):
            self._write_txt(predn, shape, self.save_dir / "labels" / f"{path.stem}.txt")
        if self.save_json:
            image_id = int(path.stem) if path.stem.isnumeric() else path.stem
            rows = coco_rows(predn[:, :4], predn[:, 5], self.coco, score=predn[:, 4])
            self.jdict += [dict(image_id=image_id, **row) for row in rows]
            self.images.append(
                {"id": image_id, "file_name": path.name, "height": int(shape[0]), "width": int(shape[1])}
            )
            for row in coco_rows(labelsn[:, 1:5], labelsn[:, 0], self.coco):
                self.annotations.append(dict(id=len(self.annotations) + 1, image_id=image_id, iscrowd=0, **row))

    def _write_txt(self, predn: torch.Tensor, shape: Sequence[int], file: Path) -> None:
        """Append 'cls x y w h [conf]' rows normalised to the original image."""
        gn = torch.tensor(shape, dtype=torch.float32)[[1, 0, 1, 0]]
        xywh = (xyxy2xywh(predn[:, :4].float().cpu()) / gn).tolist()
        with open(file, "a") as f:
            for (conf, cls), box in zip(predn[:, 4:6].tolist(), xywh):
                line = (cls, *box, conf) if self.save_conf else (cls, *box)
                f.write(("%g " * len(line)).rstrip() % line + "\n")


def _forward(model, im: torch.Tensor, augment: bool, need_train_out: bool):
    """(pred (B, N, 5+nc), train_out or None) from a DetectionModel or a DetectMultiBackend."""
    if augment:
        pred = augmented_forward(model, im)
        if pred is not None:
            return pred, None
        LOGGER.warning("WARNING: --augment needs PyTorch (.pt) weights; running without it")
    out = model(im)
    if isinstance(out, (list, tuple)):
        return out[0], (out[1] if need_train_out and len(out) > 1 else None)
    return out, None


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


def _model_device(model, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if getattr(model, "device", None) is not None:
        return torch.device(model.device)
    p = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(
    model,
    dataloader,
    names: Union[Mapping[int, str], Sequence[str]],
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    device: Union[str, torch.device, None] = None,
    half: bool = False,
    single_cls: bool = False,
    augment: bool = False,
    compute_loss: Callable | None = None,
    save_dir: Union[str, Path, None] = None,
    plots: bool = True,
    save_txt: bool = False,
    save_hybrid: bool = False,
    save_conf: bool = False,
    save_json: bool = False,
    verbose: bool = False,
    progress: bool = True,
    imgsz: int | None = None,
    batch_size: int | None = None,
    json_name: str = "predictions.json",
    coco: CocoTarget | None = None,
) -> EvalResult:
    """Validate a detector on a dataloader of (imgs uint8 (B, 3, H, W), targets (n, 6), paths, shapes).

    model: an eval-mode DetectionModel (returns (pred, feats)) or a DetectMultiBackend (returns pred).
    compute_loss (training): called on the raw feature maps; also hides the per-class table and speed line.
    Writes plots, labels/*.txt, COCO json and results.json into save_dir when given. imgsz and batch_size only
    label the speed line (default: the batches' size). coco: category ids and ground truth of the COCO json
    (default: class indices, scored against annotations built from the labels).
    """
    device, training = _model_device(model, device), compute_loss is not None
    names = names_dict(names)
    nc = 1 if single_cls else len(names)
    save_dir = Path(save_dir) if save_dir is not None else None
    plots = plots and save_dir is not None
    half = half and device.type != "cpu"
    bare = isinstance(model, torch.nn.Module) and not hasattr(model, "fp16")  # a DetectionModel: we cast it
    if bare and half:  # a half copy: casting in place would round the caller's fp32 weights (train's EMA) to fp16
        model = copy.deepcopy(model).half()
    elif bare:
        model.float()
    nhwc = not training and channels_last(model)  # val.py's backend; the trainer's model keeps its layout
    st = _State(torch.linspace(0.5, 0.95, 10, device=device), ConfusionMatrix(nc=nc) if plots else None,
                torch.zeros(3, device=device),
                _Outputs(save_dir, save_txt, save_conf, save_json, coco or CocoTarget()))  # fmt: skip
    batches = dataloader
    if progress:
        from tqdm import tqdm

        batches = tqdm(dataloader, desc=HEADER, file=sys.stderr, bar_format="{l_bar}{bar:10}{r_bar}")
    for batch_i, (im, targets, paths, shapes) in enumerate(batches):
        t0 = time_sync()
        im = im.to(device, non_blocking=True)
        im = (im.half() if half else im.float()) / 255
        im = im.contiguous(memory_format=torch.channels_last) if nhwc else im
        targets = targets.to(device)
        st.shape = st.shape or tuple(im.shape)
        t1 = time_sync()
        preds, train_out = _forward(model, im, augment, training)
        t2 = time_sync()
        if training and train_out is not None:
            st.loss += compute_loss(train_out, targets)[1]
        targets[:, 2:] *= torch.tensor(im.shape[2:], device=device)[[1, 0, 1, 0]]  # normalised -> pixels
        lb = [targets[targets[:, 0] == i, 1:] for i in range(im.shape[0])] if save_hybrid else []
        preds = non_max_suppression(preds, conf_thres, iou_thres, labels=lb, multi_label=True, agnostic=single_cls,
                                    max_det=max_det)  # fmt: skip
        st.dt = [a + b for a, b in zip(st.dt, (t1 - t0, t2 - t1, time_sync() - t2))]
        for si, pred in enumerate(preds):
            st.add_image(pred, targets[targets[:, 0] == si, 1:], im.shape[2:], shapes[si], Path(paths[si]), single_cls)
        if plots and batch_i < 3:
            _plot_batch(batch_i, im, targets, preds, paths, save_dir, names)
    if bare:
        model.float()
    res = _summarise(st.stats, nc, names, plots, save_dir)
    res.seen, res.names = st.seen, names
    res.speeds = tuple(t / max(st.seen, 1) * 1e3 for t in st.dt)
    res.losses = tuple((st.loss.cpu() / max(len(dataloader), 1)).tolist())
    _print_table(res, nc, per_class=verbose or (nc < 50 and not training), header=not (progress and _tty()))
    if not training:
        bs = batch_size or getattr(dataloader, "batch_size", None) or (st.shape[0] if st.shape else 1)
        size = imgsz or (max(st.shape[2:]) if st.shape else 0)
        LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {(bs, 3, size, size)}"
                    % res.speeds)  # fmt: skip
    if save_dir is not None:
        _save_outputs(res, st, save_dir, names, plots, json_name)
    return res


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
    """What the loop accumulates: per-image stats, the confusion matrix, losses, timings and side outputs."""

    iouv: torch.Tensor
    cm: ConfusionMatrix | None  # only filled when it is plotted
    loss: torch.Tensor
    outputs: _Outputs
    stats: list = field(default_factory=list)
    dt: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    seen: int = 0
    shape: Tuple[int, ...] | None = None

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
