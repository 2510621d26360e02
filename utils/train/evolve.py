"""train.py --evolve: YOLOv5's hyperparameter evolution, one full training per trial, locally or as Ray tasks.

Each trial trains with --noval --nosave into a temporary folder, its final-epoch metrics and hyperparameters go
into evolve.csv as one atomically written row, and its small files (results.csv, hyp.yaml, opt.yaml) into
trials/tNNNN. evolve.csv is the whole state: a killed evolution resumes from it and loses no finished trial.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil
import time
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from utils.errors import UserError
from utils.scaleout import clean_incoming, make_runner, node_info, pack_dir, scratch_dir, unpack_into
from utils.train.evolve_ga import META, clip_hyp, evolvable_keys, mutate, select_parent
from utils.train.evolve_io import append_evolve_row, plot_evolve, read_evolve_csv, summary, write_hyp_yaml
from utils.train.evolve_setup import evolve_folder, population_seeds

LOGGER = logging.getLogger(__name__)

DETECT_METRICS = (
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
)


def train_detect(opt: Namespace, hyp: Dict[str, Any]) -> Path:
    """The detection task's training (imported when called, so Ray workers import it on their own node)."""
    from utils.train.run import train

    return train(opt, hyp)


@dataclass(frozen=True)
class EvolveTask:
    """What evolution needs from a task: how to train, which results.csv columns a trial records (the final
    epoch's), their fitness weights, the search space, and the errors that score a trial zero instead of stopping.
    segment/train.py passes its own (utils/segment/evolve.py: box and mask metrics, 12 columns)."""

    train_fn: Callable[[Namespace, Dict[str, Any]], Path] = train_detect
    metric_keys: Tuple[str, ...] = DETECT_METRICS
    weights: Tuple[float, ...] = (0.0, 0.0, 0.1, 0.9, 0.0, 0.0, 0.0)  # 0.1 mAP50 + 0.9 mAP50-95
    meta: Mapping[str, Tuple[float, float, float]] = field(default_factory=lambda: dict(META))
    zero_on: Tuple[str, ...] = ("TrainingDiverged",)
    script: str = "train.py"  # named in the summary's usage line

    def fitness(self, metrics: np.ndarray) -> np.ndarray:
        """(n,) fitness of (n, len(metric_keys)) metric rows."""
        return np.asarray(metrics, dtype=float).reshape(-1, len(self.weights)) @ np.asarray(self.weights)


@dataclass
class TrialResult:
    """One finished trial: final-epoch metrics, its packed folder (no weights), start time (epoch seconds) and
    duration, and the node it ran on."""

    metrics: List[float]
    files: bytes
    started: float
    seconds: float
    node: Dict[str, str]


def final_metrics(results_csv: Path, keys: Sequence[str]) -> List[float]:
    """The named columns of results.csv's last row."""
    with open(results_csv, newline="") as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f) if r]
    if len(rows) < 2:
        raise UserError(f"{results_csv}: no epoch was recorded")
    missing = [k for k in keys if k not in rows[0]]
    if missing:
        raise UserError(f"{results_csv} lacks {', '.join(missing)}")
    return [float(rows[-1][rows[0].index(k)]) for k in keys]


def training_hyp(hyp: Mapping[str, float]) -> Dict[str, Any]:
    """The hyp a trial trains with: 'anchors' (evolved as a real number) as a whole number of anchors per level."""
    out = dict(hyp)
    if "anchors" in out:
        out["anchors"] = int(round(out["anchors"]))
    return out


def run_trial(task: EvolveTask, opt_dict: Dict[str, Any], hyp: Dict[str, float]) -> TrialResult:
    """Train once with hyp into a temporary folder on this node; return its metrics and packed folder."""
    tmp = scratch_dir("trial")
    t0 = time.time()
    try:
        opt = Namespace(**{**opt_dict, "project": str(tmp), "name": "trial", "exist_ok": True, "resume": False})
        opt.noval = opt.nosave = True
        try:
            save_dir = Path(task.train_fn(opt, training_hyp(hyp)))
            metrics = final_metrics(save_dir / "results.csv", task.metric_keys)
        except Exception as e:  # a diverged trial is a bad hyperparameter set: it scores zero
            if type(e).__name__ not in task.zero_on:
                raise
            LOGGER.warning(f"evolve: trial scored 0 ({e})")
            save_dir, metrics = tmp / "trial", [0.0] * len(task.metric_keys)
            save_dir.mkdir(exist_ok=True)
        return TrialResult(metrics, pack_dir(save_dir, skip=("weights",)), t0, time.time() - t0, node_info())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Evolution:
    """The state of one evolution folder: its options, base hyperparameters, columns, rows and random streams."""

    def __init__(self, opt: Namespace, task: EvolveTask, seed: Optional[int] = None):
        self.task = task
        self.save_dir, self.opt, self.base = evolve_folder(opt, task.meta)
        self.hyp_keys = evolvable_keys(self.base, task.meta)
        self.keys = [*task.metric_keys, *self.hyp_keys]
        self.fixed = {k: v for k, v in self.base.items() if k not in self.hyp_keys}
        self.seeds = population_seeds(self.opt, self.base, self.hyp_keys)
        self.csv = self.save_dir / "evolve.csv"
        seed = time.time_ns() if seed is None else seed
        self.rng, self.nprng = random.Random(seed), np.random.default_rng(seed)
        clean_incoming(self.save_dir / "trials")
        old, rows = read_evolve_csv(self.csv)
        if old and old != self.keys:
            raise UserError(f"{self.csv}: its columns differ from this evolution's (another --hyp or task?)")
        self.rows = rows if len(rows) else np.zeros((0, len(self.keys)))

    def next_hyp(self, k: int) -> Dict[str, float]:
        """Trial k's hyperparameters: a --evolve_population seed, the base (trial 0 of an empty csv), or a mutation
        of a parent drawn from the best rows (of the base, while no row is finished)."""
        if k < len(self.seeds):
            return clip_hyp(self.seeds[k], self.task.meta)
        if not len(self.rows):
            base = clip_hyp(self.base, self.task.meta)
            return base if k == 0 else mutate(base, self.hyp_keys, self.nprng, self.task.meta)
        m = len(self.task.metric_keys)
        row = select_parent(self.rows, self.task.fitness(self.rows[:, :m]), self.rng)
        parent = {**self.base, **dict(zip(self.hyp_keys, row[m:].tolist()))}
        return mutate(parent, self.hyp_keys, self.nprng, self.task.meta)

    def record(self, hyp: Mapping[str, float], result: TrialResult, total: int) -> None:
        """Append the trial's row (atomically), put its folder in place, refresh hyp_evolve.yaml, log one line."""
        values = [*result.metrics, *[float(hyp[k]) for k in self.hyp_keys]]
        n = append_evolve_row(self.csv, self.keys, values)
        self.rows = read_evolve_csv(self.csv)[1]
        trial = unpack_into(result.files, self.save_dir / "trials" / f"t{n - 1:04d}")
        (trial / "trial.json").write_text(
            json.dumps({"row": n - 1, "started": result.started, "seconds": result.seconds, **result.node})
        )
        m = len(self.task.metric_keys)
        fit = self.task.fitness(self.rows[:, :m])
        write_hyp_yaml(self.save_dir / "hyp_evolve.yaml", self.keys, self.rows, fit, m, self.fixed, training_hyp)
        where = f" on {result.node.get('host')}" if result.node.get("node_id") else ""
        LOGGER.info(
            f"evolve: trial {n}/{total} fitness {fit[-1]:.5f} (best {fit.max():.5f}, row {int(fit.argmax())}) "
            f"in {result.seconds:.0f}s{where}"
        )

    def finish(self) -> None:
        """evolve.png and the printed summary."""
        m = len(self.task.metric_keys)
        fit = self.task.fitness(self.rows[:, :m])
        plot_evolve(self.csv.with_suffix(".png"), self.keys, self.rows, fit, m)
        LOGGER.info(summary(self.keys, self.rows, fit, m, self.save_dir, self.task.script))


def evolve(opt: Namespace, task: Optional[EvolveTask] = None, runner=None, seed: Optional[int] = None) -> Path:
    """Run (or resume) an evolution until evolve.csv has opt.evolve rows; returns its folder.

    runner: LocalRunner (one trial at a time, in this process) or RayRunner (as many trials at once as the
    cluster holds; each new trial mutates the best rows finished when it starts). Default: from opt.ray.
    """
    runner = runner or make_runner(getattr(opt, "ray", None), getattr(opt, "ray_cpus", None))  # first: no folder
    ev = Evolution(opt, task or EvolveTask(), seed)  # is made when the cluster is not there
    total = int(ev.opt.evolve)
    opt_dict = vars(ev.opt)
    LOGGER.info(f"evolve: {len(ev.rows)} of {total} trials done in {ev.save_dir}, {len(ev.hyp_keys)} keys evolve")
    pending: Dict[Any, Dict[str, float]] = {}
    try:
        while len(ev.rows) < total:
            while len(pending) < runner.width and len(ev.rows) + len(pending) < total:
                hyp = ev.next_hyp(len(ev.rows) + len(pending))
                pending[runner.submit(run_trial, ev.task, opt_dict, hyp)] = hyp
            handle, result = runner.wait(list(pending))
            ev.record(pending.pop(handle), result, total)
    except (KeyboardInterrupt, UserError):
        LOGGER.info(
            f"evolve: stopped with {len(ev.rows)} rows; resume with: python train.py --resume_evolve {ev.save_dir}"
        )
        raise
    if len(ev.rows):
        ev.finish()
    return ev.save_dir
