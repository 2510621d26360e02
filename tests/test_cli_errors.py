"""Every CLI refuses bad flags and inputs with one 'error: ...' line, a non-zero exit and no traceback.

In-process (main wrapped in run_cli, output captured): what is tested is the message and the exit code."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.helpers import TINY_S16, make_tiny_dataset, make_tiny_weights, run_main


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """Paths used by the cases: {W} weights, {D} dataset yaml, {I} its val images, {T} a scratch folder."""
    t = tmp_path_factory.mktemp("cli_errors")
    data = make_tiny_dataset(t / "ds")
    (t / "empty/images/train").mkdir(parents=True)
    (t / "empty/images/val").mkdir(parents=True)
    (t / "empty/e.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b]\n")
    (t / "noval.yaml").write_text(f"path: {t / 'ds'}\ntrain: images/train\nnames: [a, b]\n")
    (t / "text.mp4").write_text("not a video\n")
    return {"W": str(make_tiny_weights(t / "tiny.pt")), "D": str(data), "I": str(t / "ds/images/val"), "T": str(t),
            "C": str(_tiny_classifier(t / "cls.pt"))}  # fmt: skip


def _tiny_classifier(path: Path) -> Path:
    """A 2-class classifier cut from the tiny detector's backbone, as a checkpoint."""
    from models.classify import ClassificationModel, classifier_yaml
    from utils.checkpoint import model_to_dict, save_checkpoint

    model = ClassificationModel(classifier_yaml(copy.deepcopy(TINY_S16), 2))
    model.names = ["a", "b"]
    return save_checkpoint({"model": model_to_dict(model, half=False)}, path)


TRAIN = ("--imgsz", "64", "--epochs", "1", "--batch-size", "2", "--workers", "0", "--noplots")
# (script, args with {W} {D} {I} {T} placeholders, exit code, text of the one 'error:' line)
CASES = [
    ("train.py", ["--weights", "{T}/nope.pt", "--data", "{D}"], 2, "error: --weights file not found"),
    ("train.py", ["--cfg", "nope5.yaml", "--data", "{D}"], 2, "error: --cfg file not found"),
    ("train.py", ["--cfg", "{W}", "--data", "{D}"], 2, "not a valid YAML text file"),  # a .pt given as --cfg
    ("train.py", ["--weights", "{W}", "--data", "{T}/nope.yaml"], 2, "error: --data file not found"),
    ("train.py", ["--weights", "{W}", "--data", "{T}/noval.yaml"], 2, "missing key(s) val"),
    ("train.py", ["--weights", "{W}", "--data", "{D}", "--hyp", "{T}/nope.yaml"], 2, "error: --hyp file not found"),
    ("train.py", ["--weights", "{W}", "--data", "{D}", "--hyp", "{D}"], 2, "error: --hyp lacks lr0"),
    ("train.py", ["--weights", "{W}", "--data", "{D}", *TRAIN, "--epochs", "0"], 2, "must be positive (got 0, 2)"),
    ("train.py", ["--weights", "{W}", "--data", "{D}", *TRAIN, "--epochs", "-1"], 2, "must be positive (got -1, 2)"),
    ("train.py", ["--weights", "{W}", "--data", "{D}", *TRAIN, "--batch-size", "0"], 2, "must be positive (got 1, 0)"),
    ("train.py", ["--weights", "{W}", "--data", "{D}", *TRAIN, "--device", "0"], 2, "CUDA is not available"),
    ("train.py", ["--weights", "{W}", "--data", "{T}/empty/e.yaml", *TRAIN], 1, "error: No images found in"),
    ("val.py", ["--weights", "{T}/nope.pt", "--data", "{D}"], 2, "error: weights file not found"),
    ("val.py", ["--weights", "{W}", "--data", "{T}/nope.yaml"], 2, "error: --data file not found"),
    ("val.py", ["--weights", "{W}", "--data", "{D}", "--device", "0"], 2, "CUDA is not available"),
    ("val.py", ["--weights", "{W}", "--data", "{D}", "--batch-size", "0"], 2, "error: --batch-size must be positive"),
    ("val.py", ["--weights", "{W}", "--data", "{T}/empty/e.yaml", "--imgsz", "64"], 1, "error: No images found in"),
    ("detect.py", ["--weights", "{T}/nope.pt", "--source", "{I}"], 2, "error: weights file not found"),
    ("detect.py", ["--weights", "{W}", "--source", "{T}/nope.jpg"], 2, "error: --source not found"),
    ("detect.py", ["--weights", "{W}", "--source", "{T}/text.mp4"], 2, "error: cannot decode video"),
    ("detect.py", ["--weights", "{W}", "--source", "{T}/empty/images/val"], 2, "error: --source has no images"),
    ("detect.py", ["--weights", "{W}", "--source", "{I}", "--device", "0"], 2, "CUDA is not available"),
    ("export.py", ["--weights", "{T}/nope.pt"], 2, "error: weights file not found"),
    ("export.py", ["--weights", "{W}", "--device", "0"], 2, "CUDA is not available"),
    # red team 2026-12-06: weights of another task, and --mask-ratio past the smallest image side
    ("detect.py", ["--weights", "{C}", "--source", "{I}", "--imgsz", "64"], 2, "is not detections"),
    ("train.py", ["--weights", "{C}", "--data", "{D}", *TRAIN], 2, "is not a detection model"),
    ("segment/train.py", ["--weights", "{W}", "--data", "{D}", *TRAIN], 2, "is not a segmentation model"),
    ("segment/train.py", ["--weights", "{W}", "--data", "{D}", *TRAIN, "--mask-ratio", "33"], 2, "in 1..32, got 33"),
    ("classify/predict.py", ["--weights", "{W}", "--source", "{I}", "--imgsz", "32"], 2, "a detection model;"),
]


@pytest.mark.parametrize("script,args,code,text", CASES, ids=[f"{c[0]}:{' '.join(c[1][-2:])}" for c in CASES])
def test_one_clear_error_line(env, tmp_path, script, args, code, text, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = [] if script == "export.py" else ["--project", tmp_path]  # export.py writes beside the weights
    r = run_main(script, *[a.format(**env) for a in args], *out)
    assert r.returncode == code, r.stdout[-1500:] + r.stderr[-1500:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and text in errors[0], r.stderr[-1500:]
    assert not list(tmp_path.glob("*/weights/*.pt"))  # nothing trained


@pytest.mark.parametrize("script", ["train.py", "val.py", "detect.py", "export.py"])
def test_bad_flag_is_argparse_exit_2(script):
    r = run_main(script, "--no-such-flag")
    assert r.returncode == 2 and "unrecognized arguments: --no-such-flag" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_imgsz_not_multiple_of_stride_is_adjusted(env, tmp_path):
    # the tiny model's max stride is 16: detect / val round 70 up to 80; train uses at least 32, so 96
    r = run_main("detect.py", "--weights", env["W"], "--source", env["I"], "--imgsz", "70",
                 "--project", tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "WARNING: --imgsz [70, 70] must be multiple of max stride 16, updating to [80, 80]" in r.stdout + r.stderr
    r = run_main("export.py", "--weights", env["W"], "--imgsz", "70", "--include", "torchscript")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "updating to [80, 80]" in r.stdout + r.stderr
    assert Path(env["W"]).with_suffix(".torchscript").is_file()
    r = run_main("train.py", "--weights", env["W"], "--data", env["D"], *TRAIN, "--imgsz", "70",
                 "--project", tmp_path, "--name", "t")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "WARNING: --imgsz 70 must be multiple of max stride 32, updating to 96" in r.stdout + r.stderr
