"""Classification metrics: top-1 / top-5 accuracy overall and per class, accumulated batch by batch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch

LOGGER = logging.getLogger(__name__)
METRIC_NAMES = ("accuracy_top1", "accuracy_top5")  # results.csv: metrics/accuracy_top1, metrics/accuracy_top5


@dataclass
class ClassifyMetrics:
    """top1, top5 in [0, 1]; per_class {name: (images, top1, top5)}; fitness = top1 (as official)."""

    top1: float = 0.0
    top5: float = 0.0
    images: int = 0
    per_class: Dict[str, Tuple[int, float, float]] = field(default_factory=dict)
    losses: Tuple[float, ...] = ()  # mean validation loss (training), else ()
    speeds: Tuple[float, ...] = ()  # ms per image: pre-process, inference, post-process

    @property
    def row(self) -> Tuple[float, ...]:
        return (self.top1, self.top5)

    @property
    def fitness(self) -> float:
        return self.top1

    def to_dict(self) -> Dict[str, Any]:
        return {
            "images": self.images,
            "top1": self.top1,
            "top5": self.top5,
            "per_class_top1": {k: v[1] for k, v in self.per_class.items()},
            "per_class_top5": {k: v[2] for k, v in self.per_class.items()},
            "losses": list(self.losses),
            "speeds": list(self.speeds),
        }

    def log_table(self, per_class: bool = True) -> None:
        """The official val table: Class, Images, top1_acc, top5_acc (all, then each class)."""
        LOGGER.info(f"{'Class':>24}{'Images':>12}{'top1_acc':>12}{'top5_acc':>12}")
        LOGGER.info(f"{'all':>24}{self.images:>12}{self.top1:>12.3g}{self.top5:>12.3g}")
        for name, (n, t1, t5) in self.per_class.items() if per_class else ():
            LOGGER.info(f"{name:>24}{n:>12}{t1:>12.3g}{t5:>12.3g}")


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, k: int = 5) -> torch.Tensor:
    """probs (B, nc), labels (B,) -> (B, 2) float: [label is the top class, label is among the top k]."""
    top = probs.argsort(1, descending=True)[:, :k]  # (B, min(k, nc))
    hit = (top == labels[:, None]).float()
    return torch.stack((hit[:, 0], hit.max(1).values), 1)


class ClassifyEvaluator:
    """Evaluator (utils/task.py): postprocess (softmax) and update per batch, then summarize() -> ClassifyMetrics.

    per_class: log the official table with a row per class at summarize(); otherwise only its 'all' row.
    """

    header = f"{'Class':>24}{'Images':>12}{'top1_acc':>12}{'top5_acc':>12}"
    post_name = "post-process"

    def __init__(self, names: Dict[int, str] | Sequence[str], save_dir: Path | None = None, plots: bool = False,
                 per_class: bool = False, **_):  # fmt: skip
        self.names = dict(enumerate(names)) if not isinstance(names, dict) else dict(names)
        self.save_dir, self.plots, self.per_class = save_dir, plots, per_class
        self.correct: List[torch.Tensor] = []
        self.labels: List[torch.Tensor] = []

    def postprocess(self, preds: torch.Tensor, batch: Sequence[Any]) -> torch.Tensor:
        """logits (B, nc) -> softmax probabilities (B, nc)."""
        from utils.classify.predict import check_logits

        return check_logits(preds).float().softmax(1)

    def update(self, results: Sequence[torch.Tensor], batch: Sequence[Any]) -> None:
        """results: (nc,) probabilities per image; batch[1]: labels (B,)."""
        probs = torch.stack(list(results)) if not isinstance(results, torch.Tensor) else results
        labels = batch[1].to(probs.device)
        self.correct.append(topk_correct(probs, labels).cpu())
        self.labels.append(labels.cpu())

    def summarize(self, losses: Sequence[float] = (), speeds: Sequence[float] = ()) -> ClassifyMetrics:
        m = self._summary()
        m.losses, m.speeds = tuple(losses), tuple(speeds)
        m.log_table(per_class=self.per_class)
        return m

    def _summary(self) -> ClassifyMetrics:
        if not self.correct:
            return ClassifyMetrics()
        acc, labels = torch.cat(self.correct), torch.cat(self.labels)  # (N, 2), (N,)
        top1, top5 = acc.mean(0).tolist()
        per_class = {}
        for i, name in self.names.items():
            a = acc[labels == i]
            if len(a):
                t1, t5 = a.mean(0).tolist()
                per_class[name] = (len(a), t1, t5)
        return ClassifyMetrics(top1, top5, len(labels), per_class)
