"""Classification criterion: cross-entropy with label smoothing, as official YOLOv5's classify/train.py."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

from utils.task import LossOutput


class ClassifyLoss:
    """logits (B, nc) and a batch (ims, labels (B,)) -> LossOutput(total = mean cross-entropy, items (1,)).

    Official YOLOv5 backpropagates the batch mean (not scaled by the batch size as detection is); so does this.
    `hyp` may set 'label_smoothing' (official --label-smoothing, default 0.1).
    """

    def __init__(self, model: nn.Module | None = None, hyp: Mapping[str, float] | None = None):
        self.label_smoothing = float((hyp or {}).get("label_smoothing", 0.1))
        self.ce = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

    def __call__(self, preds: torch.Tensor, batch: Sequence) -> LossOutput:
        labels = batch[1].to(preds.device)
        loss = self.ce(preds.float(), labels)
        return LossOutput(loss, loss.detach().view(1))
