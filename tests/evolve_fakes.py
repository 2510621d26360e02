"""Stand-ins for Ray and evolution tests (importable by Ray workers as tests.evolve_fakes): a fake training whose
mAP is a known function of hyp, and jobs that fail."""

from __future__ import annotations

import time
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict

import yaml

from utils.paths import increment_path
from utils.train.results_log import KEYS, ResultsLogger


def score(hyp: Dict[str, Any]) -> float:
    """A fitness landscape with its peak at lr0 = 0.02, mosaic = 0.5 (mAP50-95 of the fake run)."""
    return max(0.0, 0.8 - abs(hyp["lr0"] - 0.02) * 10 - abs(hyp["mosaic"] - 0.5) * 0.2)


def fake_train(opt: Namespace, hyp: Dict[str, Any]) -> Path:
    """Write save_dir/{hyp.yaml, opt.yaml, results.csv (opt.epochs rows), weights/last.pt} like train() does."""
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok)
    (save_dir / "weights").mkdir(parents=True, exist_ok=True)
    (save_dir / "weights" / "last.pt").write_bytes(b"not a checkpoint")
    (save_dir / "hyp.yaml").write_text(yaml.safe_dump(dict(hyp)))
    assert opt.noval and opt.nosave and isinstance(hyp["anchors"], int)
    log = ResultsLogger(save_dir, tensorboard=False)
    m = score(hyp)
    for epoch in range(opt.epochs):
        values = dict.fromkeys(KEYS, 0.0)
        values.update({"metrics/mAP_0.5": min(1.0, m * 1.5), "metrics/mAP_0.5:0.95": m, "val/box_loss": 0.05})
        log.log_epoch(epoch, [values[k] for k in KEYS])
    time.sleep(float(getattr(opt, "fake_seconds", 0.0)))
    return save_dir


def fails_first_time(marker: str) -> str:
    """Raises when marker is absent (creating it), returns 'ok' the second time: a job that needs its one retry."""
    if not Path(marker).exists():
        Path(marker).touch()
        raise RuntimeError("first try fails")
    return "ok"


def always_fails() -> None:
    raise RuntimeError("this job never works")
