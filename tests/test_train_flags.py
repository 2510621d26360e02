"""train.py accepts every official YOLOv5 train.py flag; --noval trains every epoch as official does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_dataset, run_main
from tests.test_train import BASE
from train import parse_opt

# official YOLOv5 train.py parse_opt: every flag, with a value where it takes one
OFFICIAL = [
    ("--weights", "yolov5s.pt"), ("--cfg", "yolov5s.yaml"), ("--data", "coco128.yaml"),
    ("--hyp", "hyp.scratch-low.yaml"), ("--epochs", "3"), ("--batch-size", "8"), ("--imgsz", "320"), ("--img", "320"),
    ("--img-size", "320"), ("--rect",), ("--resume",), ("--nosave",), ("--noval",), ("--noautoanchor",),
    ("--noplots",), ("--evolve",), ("--evolve_population", "data/hyps"), ("--resume_evolve", "x"),
    ("--bucket", "b"), ("--cache",), ("--cache", "disk"), ("--image-weights",), ("--device", "cpu"),
    ("--multi-scale",), ("--single-cls",), ("--optimizer", "AdamW"), ("--sync-bn",), ("--workers", "2"),
    ("--project", "runs/x"), ("--name", "n"), ("--exist-ok",), ("--quad",), ("--cos-lr",),
    ("--label-smoothing", "0.1"), ("--patience", "5"), ("--freeze", "10"), ("--save-period", "2"), ("--seed", "3"),
    ("--local_rank", "0"), ("--entity", "me"), ("--upload_dataset",), ("--upload_dataset", "val"),
    ("--bbox_interval", "5"),
]  # fmt: skip


@pytest.mark.parametrize("flag", OFFICIAL, ids=lambda f: " ".join(f))
def test_official_flag_parses(flag):
    opt = parse_opt(list(flag))
    assert opt is not None


def test_all_official_flags_at_once():
    argv = [a for f in OFFICIAL if f[0] not in ("--evolve", "--resume_evolve") for a in f]
    opt = parse_opt(argv)
    assert opt.bbox_interval == 5 and opt.upload_dataset == "val" and opt.imgsz == 320


@pytest.mark.parametrize(
    "flag, message",
    [(("--ray",), "add --evolve"), (("--resume_evolve", "runs/evolve/no-such"), "no such folder")],
)
def test_evolve_flag_misuse_exits_2(flag, message, tmp_path):
    r = run_main("train.py", *flag, "--project", tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_ignored_flags_warn_one_line_each(tmp_path):
    flags = ["--bucket", "b", "--entity", "e", "--upload_dataset", "--bbox_interval", "3", "--evolve_population", "p"]
    r = run_main("train.py", *flags, "--cfg", "yolov5n.yaml", "--epochs", "0", "--project", tmp_path)
    out = r.stdout + r.stderr
    for name in ("entity", "upload_dataset", "bbox_interval"):
        assert sum(f"--{name} is not supported" in ln for ln in out.splitlines()) == 1, name
    for name in ("bucket", "evolve_population"):  # evolve's flags: --bucket never uploads; the other needs --evolve
        assert sum(f"--{name} is ignored" in ln for ln in out.splitlines()) == 1, name
    assert r.returncode == 2 and "error: --epochs" in r.stderr  # the run then goes on to check the real options


@pytest.mark.slow
def test_noval_trains_every_epoch(tmp_path):
    """--noval --patience 1: fitness is 0 until the final validation; training must still run all 3 epochs."""
    data = make_dataset(tmp_path / "data")
    r = run_main("train.py", *BASE, "--data", data, "--project", tmp_path, "--name", "nv", "--epochs", "3",
                   "--batch-size", "4", "--noplots", "--noval", "--patience", "1")  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = (tmp_path / "nv/results.csv").read_text().splitlines()
    assert len(rows) == 4 and "Stopping training early" not in r.stdout + r.stderr
    assert float(rows[1].split(",")[6]) == 0.0  # epochs before the last are not validated
    wdir = tmp_path / "nv/weights"
    best, last = (torch.load(wdir / n, map_location="cpu", weights_only=True) for n in ("best.pt", "last.pt"))
    assert all(torch.equal(v, last["model"]["state_dict"][k]) for k, v in best["model"]["state_dict"].items())


def _as_polygons(yaml_file):
    """make_dataset's boxes rewritten as 4-corner polygons (segment labels)."""
    for f in (yaml_file.parent / "labels").rglob("*.txt"):
        rows = []
        for c, x, y, w, h in (map(float, ln.split()) for ln in f.read_text().splitlines()):
            x0, y0, x1, y1 = x - w / 2, y - h / 2, x + w / 2, y + h / 2
            rows.append(f"{int(c)} {x0:.6f} {y0:.6f} {x1:.6f} {y0:.6f} {x1:.6f} {y1:.6f} {x0:.6f} {y1:.6f}")
        f.write_text("\n".join(rows) + "\n")
    return yaml_file


@pytest.mark.parametrize("script", ["train.py", "segment/train.py"])
def test_a_last_batch_of_one_image_at_32_px_is_left_out(script, tmp_path):
    """--img 32 makes the deepest map 1x1; 4 images in batches of 3 would leave a batch of one there, which
    BatchNorm refuses in training (a traceback before): the training loader leaves that image out."""
    seg = script.startswith("segment")
    data = make_dataset(tmp_path / "d", n_train=4, n_val=2)
    r = run_main(script, "--data", _as_polygons(data) if seg else data, "--cfg", f"yolov5n{'-seg' if seg else ''}.yaml",
                 "--weights", "", "--img", "32", "--batch-size", "3", "--epochs", "1", "--workers", "0", "--noplots",
                 "--noautoanchor", "--project", tmp_path, "--name", "b3")  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "leaves out its last image" in r.stdout + r.stderr
    assert len((tmp_path / "b3/results.csv").read_text().splitlines()) == 2


@pytest.mark.parametrize("script", ["train.py", "classify/train.py"])
def test_batches_of_one_image_at_32_px_are_one_line(script, tmp_path):
    if script == "train.py":
        args = ["--data", make_dataset(tmp_path / "d", n_train=2, n_val=1), "--cfg", "yolov5n.yaml", "--weights", ""]
    else:
        from tests.test_classify import _image

        rng = np.random.default_rng(0)
        for split, c in (("train", "a"), ("train", "b"), ("val", "a"), ("val", "b")):
            (tmp_path / "d" / split / c).mkdir(parents=True)
            _image(tmp_path / "d" / split / c / "0.jpg", rng)
        args = ["--data", tmp_path / "d", "--model", "yolov5n.yaml", "--pretrained", "False"]
    r = run_main(script, *args, "--img", "32", "--batch-size", "1", "--epochs", "1", "--workers", "0",
                 "--project", tmp_path, "--name", "b1")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: --imgsz 32 with batches of one image")


def test_multi_scale_never_goes_below_two_strides():
    from utils.train.epoch import random_rescale

    imgs = torch.zeros(2, 3, 32, 32)
    sides = {random_rescale(imgs, 32, 32).shape[-1] for _ in range(200)}
    assert min(sides) == 64 and all(s % 32 == 0 for s in sides)  # official's rule can draw 0 or 32 here
