"""The classification Task: the parts the shared engine calls (see utils/task.py)."""

from __future__ import annotations

from utils.classify.loss import ClassifyLoss
from utils.classify.metrics import METRIC_NAMES, ClassifyEvaluator
from utils.classify.predict import annotate, postprocess
from utils.task import Task

CLASSIFY = Task(
    name="classify",
    loss_names=("loss",),
    metric_names=METRIC_NAMES,
    criterion=ClassifyLoss,
    evaluator=ClassifyEvaluator,
    postprocess=postprocess,
    annotate=annotate,
)
