"""Validation's per-image side outputs: label .txt files, COCO predictions and the COCO ground truth from the labels."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import torch

from utils.boxes import xyxy2xywh
from utils.val.coco import CocoTarget, coco_rows


class ImageOutputs:
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
