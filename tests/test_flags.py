"""Every official YOLOv5 flag of detect.py, export.py and val.py parses; inert ones warn, those that matter exit 2."""

from __future__ import annotations

import pytest

import detect
import export
import val

# The official parse_opt flags (YOLOv5 v7 line), written out: script -> (flag, example value or None for a switch).
OFFICIAL = {
    "detect": [
        ("--weights", "a.pt"), ("--source", "img.jpg"), ("--data", "coco128.yaml"), ("--imgsz", "320"),
        ("--img", "320"), ("--img-size", "320"), ("--conf-thres", "0.3"), ("--iou-thres", "0.5"), ("--max-det", "10"),
        ("--device", "cpu"), ("--view-img", None), ("--save-txt", None), ("--save-format", "1"), ("--save-csv", None),
        ("--save-conf", None), ("--save-crop", None), ("--nosave", None), ("--classes", "0"), ("--agnostic-nms", None),
        ("--augment", None), ("--update", None), ("--project", "runs/x"), ("--name", "e"), ("--exist-ok", None),
        ("--line-thickness", "2"), ("--hide-labels", None), ("--hide-conf", None), ("--half", None), ("--dnn", None),
        ("--vid-stride", "2"),
    ],
    "export": [
        ("--data", "coco128.yaml"), ("--weights", "a.pt"), ("--imgsz", "320"), ("--img", "320"), ("--img-size", "320"),
        ("--batch-size", "2"), ("--device", "cpu"), ("--half", None), ("--inplace", None), ("--keras", None),
        ("--optimize", None), ("--int8", None), ("--per-tensor", None), ("--dynamic", None), ("--cache", "t.cache"),
        ("--simplify", None), ("--mlmodel", None), ("--opset", "12"), ("--verbose", None), ("--workspace", "8"),
        ("--nms", None), ("--agnostic-nms", None), ("--topk-per-class", "50"), ("--topk-all", "50"),
        ("--iou-thres", "0.5"), ("--conf-thres", "0.3"), ("--include", "onnx"),
    ],
    "val": [
        ("--data", "coco128.yaml"), ("--weights", "a.pt"), ("--batch-size", "4"), ("--imgsz", "320"), ("--img", "320"),
        ("--img-size", "320"), ("--conf-thres", "0.01"), ("--iou-thres", "0.5"), ("--max-det", "100"),
        ("--task", "test"), ("--device", "cpu"), ("--workers", "0"), ("--single-cls", None), ("--augment", None),
        ("--verbose", None), ("--save-txt", None), ("--save-hybrid", None), ("--save-conf", None),
        ("--save-json", None), ("--project", "runs/x"), ("--name", "e"), ("--exist-ok", None), ("--half", None),
        ("--dnn", None),
    ],
}  # fmt: skip
SCRIPTS = {"detect": detect, "export": export, "val": val}


def _argv(pairs) -> list:
    return [x for flag, value in pairs for x in ((flag,) if value is None else (flag, value))]


@pytest.mark.parametrize("script", sorted(OFFICIAL))
def test_official_flag_list_parses(script):
    opt = SCRIPTS[script].parse_opt(_argv(OFFICIAL[script]))
    assert opt.conf_thres in (0.3, 0.01) and opt.device == "cpu"


@pytest.mark.parametrize("script,flag", [(s, f) for s in sorted(OFFICIAL) for f, _ in OFFICIAL[s]])
def test_each_official_flag_parses_alone(script, flag):
    value = dict(OFFICIAL[script])[flag]
    SCRIPTS[script].parse_opt([flag] if value is None else [flag, value])


def test_detect_values():
    opt = detect.parse_opt(["--save-format", "1", "--update", "--imgsz", "320"])
    assert opt.save_format == 1 and opt.update and opt.imgsz == [320, 320]
    assert detect.parse_opt([]).save_format == 0


@pytest.mark.parametrize("flag", ["--keras", "--optimize", "--nms", "--agnostic-nms"])
def test_export_flags_that_matter_exit_2(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export.main(export.parse_opt(["--weights", str(tmp_path / "a.pt"), flag]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag} is not supported: ")


def _warnings(script, argv, capsys) -> list:
    """Run main() on argv naming missing files: the flag lines come first, then the one-line missing-file error."""
    mod = SCRIPTS[script]
    with pytest.raises(SystemExit) as e:
        mod.main(mod.parse_opt(argv))
    assert e.value.code in (1, 2)
    out = capsys.readouterr()
    assert "not found" in out.err and "Traceback" not in out.err
    return [ln for ln in (out.out + out.err).splitlines() if "is ignored" in ln]


INERT = {
    "export": [("--verbose", None), ("--cache", "t"), ("--inplace", None), ("--per-tensor", None), ("--mlmodel", None),
               ("--topk-all", "5"), ("--iou-thres", "0.1")],
    "detect": [("--update", None), ("--dnn", None)],
    "val": [("--dnn", None)],
}  # fmt: skip


@pytest.mark.parametrize("script", sorted(INERT))
def test_inert_flags_warn_once_each(script, tmp_path, capsys, restore_logging):
    extra = ["--project", str(tmp_path)] if script != "export" else []
    extra += {"detect": ["--source", str(tmp_path)], "val": ["--data", str(tmp_path / "missing.yaml")]}.get(script, [])
    lines = _warnings(script, ["--weights", str(tmp_path / "missing.pt"), *extra, *_argv(INERT[script])], capsys)
    assert sorted(ln.split(" is ignored")[0].split()[-1] for ln in lines) == sorted(f for f, _ in INERT[script])
    assert _warnings(script, ["--weights", str(tmp_path / "missing.pt"), *extra], capsys) == []  # defaults: silent
