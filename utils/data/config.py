"""Dataset yaml reading: yaml.safe_load only, a relative root found beside the yaml (or as official), no code run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Union

from utils.errors import UserError
from utils.names import names_dict, names_list
from utils.paths import DATA_DIR, ROOT
from utils.yaml_io import read_yaml_mapping

LOGGER = logging.getLogger(__name__)
BUILTIN = "builtin"


def find_data_yaml(name: Union[str, Path]) -> Path:
    """A dataset yaml by path, or by bare name from the repo's data/ folder ('coco128' or 'coco128.yaml')."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    candidates = [DATA_DIR / p.name] + ([DATA_DIR / f"{p.name}.yaml"] if not p.suffix else [])
    for q in candidates:
        if q.is_file():
            return q
    raise UserError(f"--data file not found: {name} (also looked in {DATA_DIR})")


MAX_CLASSES = 100_000  # far above any dataset (LVIS: 1203); a larger nc would only build a huge list of names


def _names(data: Dict[str, Any], where: str) -> List[str]:
    """'names' as a list or {index: name} dict (indices 0..n-1) -> list of str; checked against 'nc'."""
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or not 1 <= nc <= MAX_CLASSES):
        raise UserError(f"{where}: 'nc' must be an int in [1, {MAX_CLASSES}], got {nc!r:.60}")
    if names is None:
        if nc is None:
            raise UserError(f"{where}: needs 'names' (a list of class names) or at least 'nc'")
        names = names_list(None, nc)
    if isinstance(names, (list, dict)) and len(names) > MAX_CLASSES:
        raise UserError(f"{where}: {len(names)} names; at most {MAX_CLASSES} classes are allowed")
    if not isinstance(names, (list, dict)):
        raise UserError(f"{where}: 'names' must be a list or an {{index: name}} mapping")
    try:
        by_index = names_dict(names)
    except UserError as e:
        raise UserError(f"{where}: 'names' keys must be class indices 0, 1, 2, ...") from e
    keys = sorted(by_index)
    if keys != list(range(len(keys))):
        raise UserError(f"{where}: 'names' keys must be the indices 0..{len(keys) - 1} without gaps, got {keys}")
    names = [by_index[k] for k in keys]
    if nc is not None and nc != len(names):
        raise UserError(f"{where}: nc is {nc} but {len(names)} names are given")
    return names


def _dataset_root(path: Any, base: Path, from_yaml: bool) -> Path:
    """The dataset root for 'path:'. A relative one is tried against base (the yaml's folder), then, as official
    YOLOv5 reads it, against the current folder and the repository root; the first that exists wins."""
    p = Path(str(path or ".")).expanduser()
    if p.is_absolute():
        return p.resolve()
    tried = [base / p] + ([Path.cwd() / p, ROOT / p] if from_yaml else [])
    found = next((q for q in tried if q.is_dir()), None)
    if found is None:
        LOGGER.info("Dataset root %s not found (tried %s)", p, ", ".join(str(q.resolve()) for q in tried))
        return tried[0].resolve()
    if found is not tried[0]:
        LOGGER.info("Dataset root %s (path: %s, not found beside the yaml)", found.resolve(), p)
    else:
        LOGGER.info("Dataset root %s", found.resolve())
    return found.resolve()


def _resolve_split(value: Any, root: Path, key: str, where: str) -> List[str]:
    """A split entry (str or list of str, each a folder or .txt list) -> absolute existing paths."""
    items = value if isinstance(value, (list, tuple)) else [value]
    out, missing = [], []
    for item in items:
        p = Path(str(item)).expanduser()
        p = p if p.is_absolute() else root / p
        (out if p.exists() else missing).append(str(p.resolve() if p.exists() else p))
    if missing:
        raise UserError(f"{where}: '{key}' path(s) not found: {', '.join(missing)}")
    return out


def check_dataset(data: Union[str, Path, Dict, None] = None) -> Dict[str, Any]:
    """Read and check a dataset yaml -> dict with absolute 'train', 'val' (and 'test') lists, 'names', 'nc',
    'path' and 'yaml_file'. None / 'builtin' -> the built-in synthetic dataset. UserError on any problem."""
    if data is None or str(data) in ("", BUILTIN, f"{BUILTIN}.yaml"):
        from utils.data.synthetic import ensure_builtin_dataset  # late: generating data is the rare path

        data = ensure_builtin_dataset()
    yaml_file = None
    if isinstance(data, dict):
        cfg, where, base = dict(data), "dataset dict", Path.cwd()
    else:
        yaml_file = find_data_yaml(data).resolve()
        where, base = str(yaml_file), yaml_file.parent
        cfg = read_yaml_mapping(yaml_file, "dataset yaml", "train/val/names")
    if cfg.get("download"):
        LOGGER.warning(f"WARNING: {where}: the 'download' entry is ignored; it will never be executed (nothing runs)")
    missing = [k for k in ("train", "val") if not cfg.get(k)]
    if missing:
        raise UserError(f"{where}: missing key(s) {', '.join(missing)} (each a folder, .txt list or list of these)")
    root = _dataset_root(cfg.get("path"), base, from_yaml=yaml_file is not None)
    names = _names(cfg, where)
    out = {k: v for k, v in cfg.items() if k != "download"}
    out.update(path=str(root), names=names, nc=len(names), yaml_file=str(yaml_file) if yaml_file else None)
    for key in ("train", "val", "test"):
        if cfg.get(key):
            out[key] = _resolve_split(cfg[key], root, key, where)
        elif key == "test":
            out.pop("test", None)
    return out
