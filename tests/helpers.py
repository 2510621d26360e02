"""Makers of the tiny datasets and weights that many test modules share, and an in-process CLI runner.

Session fixtures over these live in tests/conftest.py; a test module imports the makers when it needs its own copy.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
from pathlib import Path

import cv2
import numpy as np

from tests.child_runner import in_child  # noqa: F401  (the tests import it from here)

# A 3-class width-0.25 YOLOv5 with strides 8/16/32 (detect, hub, visualize)
TINY = {
    "nc": 3,
    "depth_multiple": 0.33,
    "width_multiple": 0.25,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [
        [-1, 1, "Conv", [32, 6, 2, 2]],
        [-1, 1, "Conv", [32, 3, 2]],
        [-1, 1, "C3", [32]],
        [-1, 1, "Conv", [64, 3, 2]],
        [-1, 1, "C3", [64]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 1, "C3", [128]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 1, "SPPF", [256, 5]],
    ],
    "head": [[[4, 6, 8], 1, "Detect", ["nc", "anchors"]]],
}

# A 2-class width-0.25 model with strides 4/8/16 (CLI errors, hostile inputs)
TINY_S16 = {
    "nc": 2,
    "depth_multiple": 0.33,
    "width_multiple": 0.25,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [
        [-1, 1, "Conv", [64, 6, 2, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 1, "C3", [128]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 1, "SPPF", [512, 5]],
    ],
    "head": [[[2, 3, 5], 1, "Detect", ["nc", "anchors"]]],
}


def make_tiny_weights(path: Path) -> Path:
    """A 2-class checkpoint of the TINY_S16 model (strides 4/8/16), written by save_checkpoint."""
    from models.yolo import DetectionModel
    from utils.checkpoint import model_to_dict, save_checkpoint

    model = DetectionModel(TINY_S16, verbose=False)
    model.names = ["red", "green"]
    return save_checkpoint({"model": model_to_dict(model), "epoch": -1}, path)


def make_detecting_weights(path: Path, raise_objectness: bool = True) -> Path:
    """A random TINY 3-class model (seed 0); with raise_objectness its objectness bias is raised so that it always
    finds a few boxes (class 0, 'cat', wins)."""
    import torch

    from models.yolo import DetectionModel
    from utils.checkpoint import model_to_dict, save_checkpoint

    torch.manual_seed(0)
    model = DetectionModel(TINY, verbose=False)
    model.names = ["cat", "dog", "bird"]
    det = model.model[-1]
    if raise_objectness:
        with torch.no_grad():
            for conv in det.m:
                b = conv.bias.view(det.na, -1)
                b[:, 4] = 4.0  # objectness ~0.98
                b[:, 5] = 3.0  # class 0 ('cat') wins
    save_checkpoint({"model": model_to_dict(model, half=False)}, path)
    return path


def make_tiny_dataset(root: Path, n: int = 4) -> Path:
    """n grey 96x128 PNGs with one box each in train and val (2 classes); returns the dataset yaml."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            im = np.full((96, 128, 3), 90, np.uint8)
            cv2.rectangle(im, (32, 24), (64, 56), (255, 0, 0) if i % 2 else (0, 255, 0), -1)
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), im)
            (root / "labels" / split / f"{i}.txt").write_text(f"{i % 2} 0.375 0.4166667 0.25 0.3333333\n")
    yaml_file = root / "tiny.yaml"
    yaml_file.write_text("path: .\ntrain: images/train\nval: images/val\nnames: [red, green]\n")
    return yaml_file


def make_dataset(root: Path, n_train: int = 8, n_val: int = 4) -> Path:
    """Coloured rectangles on grey 128x96 images, 2 per image, 2 classes (seed 0); returns the dataset yaml."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            im, rows = np.full((96, 128, 3), 90, np.uint8), []
            for _ in range(2):
                c, (w, h) = int(rng.integers(2)), rng.integers(16, 40, 2)
                x0, y0 = int(rng.integers(2, 126 - w)), int(rng.integers(2, 94 - h))  # clear of the edges
                cv2.rectangle(im, (x0, y0), (x0 + int(w), y0 + int(h)), (255, 0, 0) if c else (0, 255, 0), -1)
                rows.append(f"{c} {(x0 + w / 2) / 128:.6f} {(y0 + h / 2) / 96:.6f} {w / 128:.6f} {h / 96:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), im)
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(rows) + "\n")
    yaml_file = root / "tiny.yaml"
    yaml_file.write_text("path: .\ntrain: images/train\nval: images/val\nnames: [red, green]\n")
    return yaml_file


def write_video(path: Path, n: int = 12, h: int = 48, w: int = 64, fps: float = 10.0) -> Path:
    """An mp4 of n frames: a moving orange disc on dark grey."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(n):
        im = np.full((h, w, 3), 40, np.uint8)
        cv2.circle(im, (10 + 3 * i, h // 2), 8, (0, 200, 255), -1)
        vw.write(im)
    vw.release()
    return path


class Result:
    """What a CLI run left: exit code, stdout and stderr (as subprocess.CompletedProcess names them)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(script: str, *args) -> Result:
    """Run `python <script> args...` in this process: its parse_opt + main (wrapped in run_cli), output captured;
    a script without parse_opt (hubconf.py) gets the argument list as main(argv).

    For error paths, flags and runs where no process boundary is under test. stdout / stderr are redirected while
    it runs (the logging handler that main installs writes to the redirected stdout) and the root logger's handlers
    are put back afterwards."""
    module = importlib.import_module(script[:-3].replace("/", "."))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            argv = [str(a) for a in args]
            ret = module.main(module.parse_opt(argv) if hasattr(module, "parse_opt") else argv)
        code = ret if isinstance(ret, int) and not isinstance(ret, bool) else 0  # a main that returns its code
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        root.handlers[:], root.level = handlers, level
    return Result(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def zero_weight_init():
    """Modules built inside get zero-filled Conv / Linear weights instead of nn.init's uniform draws.

    For tests that only count parameters, layers or FLOPs, or that overwrite every weight: the draws cost about
    20 ns a parameter (3 s for a 140M-parameter P6/P7 model). nn.init is restored on exit."""
    import torch
    from torch.nn import init

    def zero(t: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        with torch.no_grad():
            return t.zero_()

    saved = init.kaiming_uniform_, init.uniform_
    init.kaiming_uniform_ = init.uniform_ = zero
    try:
        yield
    finally:
        init.kaiming_uniform_, init.uniform_ = saved
