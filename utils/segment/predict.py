"""segment/predict.py's loop: sources -> model -> NMS + masks -> images/videos with masks, polygon txt and crops."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import List

import numpy as np
import torch

from utils.boxes import scale_boxes
from utils.deploy.predict import NMSOptions, Profile, source_fps, summarize, to_tensor
from utils.deploy.predict_io import PredictionSaver, SaveOptions
from utils.deploy.predictor import Predictor
from utils.errors import UserError
from utils.segment.ops import masks_to_polygons, process_mask_native, scale_masks
from utils.segment.plots import blend_masks
from utils.segment.postprocess import postprocess
from utils.torch_utils import time_sync

LOGGER = logging.getLogger(__name__)


def scale_polygon(poly: np.ndarray, shape_in, shape0, normalize: bool = False) -> np.ndarray:
    """(k, 2) pixel polygon on a letterboxed input of shape_in (h, w) -> on the original image shape0 (h0, w0), clipped
    to it (and divided by its width and height with normalize)."""
    gain = min(shape_in[0] / shape0[0], shape_in[1] / shape0[1])
    pad = (shape_in[1] - shape0[1] * gain) / 2, (shape_in[0] - shape0[0] * gain) / 2
    out = (poly - np.array(pad, np.float32)) / gain
    out[:, 0] = out[:, 0].clip(0, shape0[1])
    out[:, 1] = out[:, 1].clip(0, shape0[0])
    return out / np.array([shape0[1], shape0[0]], np.float32) if normalize else out


def polygon_rows(det: torch.Tensor, masks: torch.Tensor, mask_shape, shape0, with_conf: bool) -> List[str]:
    """'cls x1 y1 x2 y2 ... [conf]' rows (normalised polygon of each mask's largest contour), lowest conf first."""
    polys = masks_to_polygons(masks)
    rows = []
    for (conf, cls), poly in zip(reversed(det[:, 4:6].tolist()), reversed(polys)):
        seg = scale_polygon(poly, mask_shape, shape0, normalize=True).reshape(-1).tolist()
        vals = (int(cls), *seg, conf) if with_conf else (int(cls), *seg)
        rows.append(("%g " * len(vals)).rstrip() % vals)
    return rows


class SegmentSaver(PredictionSaver):
    """PredictionSaver whose txt rows are polygons and whose pictures have the instance masks blended in."""

    def add_instances(self, p: Path, im0: np.ndarray, det: torch.Tensor, masks: torch.Tensor, mask_shape,
                      mode: str, frame: int = 0, fps: float = 30.0, stream_index: int = 0) -> np.ndarray:  # fmt: skip
        """det (n, 6) in original pixels; masks (n, h, w) over an image of mask_shape (the input, or the original)."""
        stem = p.stem if mode == "image" else f"{p.stem}_{frame}"
        if self.opts.save_txt:
            rows = polygon_rows(det, masks, mask_shape, im0.shape[:2], self.opts.save_conf)
            (self.save_dir / "labels" / f"{stem}.txt").write_text("".join(r + "\n" for r in rows))
            self.n_txt += 1
        if (self.opts.save_img or self.opts.view_img) and len(det):
            if tuple(masks.shape[1:]) != tuple(im0.shape[:2]):
                arr = masks.permute(1, 2, 0).contiguous().cpu().numpy().astype(np.uint8)
                masks = torch.from_numpy(scale_masks(arr, mask_shape, im0.shape[:2])).permute(2, 0, 1)
            im0 = blend_masks(im0, masks.flip(0), det[:, 5].int().flip(0).tolist(), bgr=True)  # highest conf on top
        txt, self.opts.save_txt = self.opts.save_txt, False  # the box rows of the parent are not wanted
        try:
            return self.add(p, im0, det, mode=mode, frame=frame, fps=fps, stream_index=stream_index)
        finally:
            self.opts.save_txt = txt


@torch.no_grad()
def run_segmentation(model: Predictor, dataset, save_dir: Path, nms: NMSOptions, save: SaveOptions,
                     retina_masks: bool = False) -> Profile:  # fmt: skip
    """Run a segmentation backend over a sources.load_source dataset; print, draw and save as segment/predict.py."""
    if model.task != "segment":
        raise UserError("these weights are a detection model; segment/predict.py needs a segmentation (-seg) model")
    names = model.names
    saver, prof = SegmentSaver(save_dir, names, save), Profile()
    model.use_channels_last()
    with contextlib.closing(saver):
        for path, im, im0s, cap, desc in dataset:
            t0 = time_sync()
            x = model.prepare(to_tensor(im))
            problem = model.check_input(tuple(x.shape))
            if problem:
                raise UserError(f"cannot run this model on the source: {problem}")
            t1 = time_sync()
            raw = model(x)
            t2 = time_sync()
            mode = "proto" if retina_masks else "upsample"
            results = postprocess(raw, x.shape[2:], nms.conf_thres, nms.iou_thres, nms.classes, nms.agnostic,
                                  max_det=nms.max_det, mask_mode=mode)  # fmt: skip
            t3 = time_sync()
            for k, dt in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                prof.times[k] += dt
            prof.seen += len(results)
            stream = dataset.mode == "stream"
            for i, res in enumerate(results):
                p, im0 = (path[i], im0s[i].copy()) if stream else (path, im0s.copy())
                det, masks, mask_shape = res.det.clone(), res.masks, x.shape[2:]
                if len(det):
                    det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], im0.shape).round()
                    if retina_masks:
                        masks, mask_shape = (
                            process_mask_native(res.proto, res.coefs, det[:, :4], im0.shape[:2]),
                            im0.shape[:2],
                        )
                s = (f"{desc}{i}: " if stream else desc) + "{:g}x{:g} ".format(*x.shape[2:]) + summarize(det, names)
                frame = dataset.count if stream else getattr(dataset, "frame", 0)
                saver.add_instances(Path(p), im0, det, masks, mask_shape, dataset.mode, frame,
                                    source_fps(dataset, cap, i), i)  # fmt: skip
                LOGGER.info("%s%.1fms", s, (t2 - t1) * 1e3)
    return prof
