"""Hyperparameter evolution's folder: a new one under runs/evolve, or the one --resume_evolve names, and its seeds."""

from __future__ import annotations

import logging
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import yaml

from utils.errors import UserError
from utils.paths import ROOT, increment_path
from utils.yaml_io import read_yaml_mapping

LOGGER = logging.getLogger(__name__)
# options that say how to run, not what to train: a resumed evolution takes --ray and --ray-cpus from its new
# command line (absent: here, one trial at a time), the others only where given (not at train.py's default)
RUN_OPTIONS = ("ray", "ray_cpus", "device", "workers", "evolve")
UNSET = {"device": "", "workers": 8, "evolve": None}  # train.py's defaults (tests/test_evolve.py checks them)


def base_hyperparameters(opt: Namespace, meta: Mapping[str, Any]) -> Dict[str, Any]:
    """--hyp with its defaults; 'anchors' (per level) added as 3 when absent and evolvable, dropped under
    --noautoanchor (anchors made from a count need AutoAnchor's k-means)."""
    from utils.train.setup import load_hyp

    hyp = dict(load_hyp(opt.hyp))
    if getattr(opt, "noautoanchor", False):
        hyp.pop("anchors", None)
    elif "anchors" in meta:
        hyp.setdefault("anchors", 3)
    return hyp


def _find_resume(opt: Namespace) -> Path:
    """The folder --resume_evolve names (a folder or a file in it), or the newest evolve.csv under --project."""
    target = opt.resume_evolve
    if target in ("", True):
        found = sorted(Path(_project(opt)).glob("*/evolve.csv"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise UserError(f"--resume_evolve: no evolve.csv under {_project(opt)}")
        return found[-1].parent
    path = Path(target)
    folder = path.parent if path.is_file() else path
    if not folder.is_dir():
        raise UserError(f"--resume_evolve {target}: no such folder")
    return folder


DEFAULT_PROJECTS = {"runs/train": "runs/evolve", "runs/train-seg": "runs/evolve-seg"}  # as YOLOv5's --evolve


def _project(opt: Namespace) -> str:
    """runs/evolve (runs/evolve-seg) where train.py's (segment/train.py's) default project stands, else --project."""
    for train_dir, evolve_dir in DEFAULT_PROJECTS.items():
        if str(opt.project) == str(ROOT / train_dir):
            return str(ROOT / evolve_dir)
    return str(opt.project)


def _write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
    path.write_text(yaml.safe_dump(plain, sort_keys=False))


def evolve_folder(opt: Namespace, meta: Mapping[str, Any]) -> Tuple[Path, Namespace, Dict[str, Any]]:
    """(folder, options, base hyperparameters) of the evolution to run.

    New: project/name (incremented), with opt.yaml and hyp.yaml written. Resumed (--resume_evolve, or --evolve
    with --resume as YOLOv5 v7.0 spells it): the folder's own opt.yaml and hyp.yaml, with the run options
    (--evolve, --ray, --device, ...) of this command line where it gives them.
    """
    resume = getattr(opt, "resume_evolve", None) is not None
    if not resume and getattr(opt, "resume", False):
        folder = Path(_project(opt)) / opt.name
        resume = (folder / "opt.yaml").is_file()
        opt.resume_evolve = str(folder) if resume else None
    if resume:
        folder = _find_resume(opt)
        if not (folder / "opt.yaml").is_file() or not (folder / "hyp.yaml").is_file():
            raise UserError(f"--resume_evolve: {folder} is not an evolution folder (no opt.yaml / hyp.yaml)")
        stored = read_yaml_mapping(folder / "opt.yaml", "evolution opt.yaml", "train.py options")
        given = {k: getattr(opt, k) for k in RUN_OPTIONS if hasattr(opt, k) and getattr(opt, k) != UNSET.get(k, ...)}
        new = Namespace(**{**stored, **given})
        new.evolve = given.get("evolve") or stored.get("evolve") or 300
        new.resume = False
        base = read_yaml_mapping(folder / "hyp.yaml", "evolution hyp.yaml", "hyperparameters")
        return folder, new, base
    opt.project = _project(opt)
    opt.resume = False
    folder = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok)
    folder.mkdir(parents=True, exist_ok=True)
    base = base_hyperparameters(opt, meta)
    _write_yaml(folder / "opt.yaml", vars(opt))
    _write_yaml(folder / "hyp.yaml", base)
    return folder, opt, base


def population_seeds(opt: Namespace, base: Mapping[str, Any], keys: Sequence[str]) -> List[Dict[str, Any]]:
    """--evolve_population DIR: each *.yaml there (sorted by name) as one of the first trials, its evolvable keys
    over the base hyperparameters. Empty without the flag."""
    folder = getattr(opt, "evolve_population", None)
    if not folder:
        return []
    files = sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else []
    if not files:
        raise UserError(f"--evolve_population {folder}: no *.yaml hyperparameter files there")
    seeds = []
    for f in files:
        d = read_yaml_mapping(f, "--evolve_population file", "hyperparameters")
        seeds.append({**base, **{k: float(d[k]) for k in keys if k in d}})
    LOGGER.info(f"evolve: {len(seeds)} seed trials from {folder}: {', '.join(f.name for f in files)}")
    return seeds
