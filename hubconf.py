"""torch.hub entry points: torch.hub.load('.', 'custom', path='best.pt', source='local') or 'yolov5n' ... 'yolov5x'.

Named models (also 'yolov5n-fla' ... 'yolov5x-fla') read <name>.pt from the current folder or the repository folder,
or from path=...; nothing is ever downloaded. `python hubconf.py --model yolov5n` runs one on a few images.
"""

from __future__ import annotations

dependencies = ["torch", "numpy", "cv2", "yaml", "PIL"]  # torch.hub checks that these import


def _create(name, pretrained=True, channels=3, classes=80, autoshape=True, verbose=True, device=None, path=None):
    """A named model; see utils.deploy.hub_models.create."""
    from utils.deploy.hub_models import create

    return _for_task(create(name, pretrained, channels, classes, autoshape, verbose, device, path))


def _for_task(model):
    """A Detector whose weights are a segmentation model becomes a Segmenter (results with masks)."""
    from utils.deploy.hub import Detector

    if type(model) is Detector and model.model.task == "segment":
        from utils.segment.hub import Segmenter

        return Segmenter(model.model, model.size)
    return model


def custom(path="path/to/model.pt", autoshape=True, _verbose=True, device=None):
    """Weights from a file (.pt ours or official, .onnx, .torchscript); a bare name gets '.pt'.

    A classifier comes back as a top-5 Classifier (utils/classify/hub.py) with autoshape, a segmentation model as a
    Segmenter whose results carry masks (utils/segment/hub.py), else as the bare model.
    """
    from utils.classify.hub import is_classifier_file
    from utils.deploy.hub_models import custom as load_custom
    from utils.deploy.hub_models import custom_path

    if autoshape and is_classifier_file(custom_path(path)):
        from utils.classify.hub import load

        return load(custom_path(path), device="" if device is None else str(device))
    return _for_task(load_custom(path, autoshape=autoshape, verbose=_verbose, device=device))


def yolov5n(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None, path=None):
    """YOLOv5n from yolov5n.pt (or path)."""
    return _create("yolov5n", pretrained, channels, classes, autoshape, _verbose, device, path)


def yolov5s(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None, path=None):
    """YOLOv5s from yolov5s.pt (or path)."""
    return _create("yolov5s", pretrained, channels, classes, autoshape, _verbose, device, path)


def yolov5m(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None, path=None):
    """YOLOv5m from yolov5m.pt (or path)."""
    return _create("yolov5m", pretrained, channels, classes, autoshape, _verbose, device, path)


def yolov5l(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None, path=None):
    """YOLOv5l from yolov5l.pt (or path)."""
    return _create("yolov5l", pretrained, channels, classes, autoshape, _verbose, device, path)


def yolov5x(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None, path=None):
    """YOLOv5x from yolov5x.pt (or path)."""
    return _create("yolov5x", pretrained, channels, classes, autoshape, _verbose, device, path)


def _fla_entry(size: str):
    """The entry point for yolov5<size>-fla (torch.hub looks names up with getattr, so '-' is fine there)."""

    def entry(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None, path=None):
        return _create(f"yolov5{size}-fla", pretrained, channels, classes, autoshape, _verbose, device, path)

    entry.__name__ = entry.__qualname__ = f"yolov5{size}_fla"
    entry.__doc__ = f"YOLOv5{size}-FLA from yolov5{size}-fla.pt (or path)."
    return entry


yolov5n_fla, yolov5s_fla, yolov5m_fla, yolov5l_fla, yolov5x_fla = (_fla_entry(s) for s in "nsmlx")
globals().update({f"yolov5{s}-fla": globals()[f"yolov5{s}_fla"] for s in "nsmlx"})


def main(argv=None) -> None:
    """python hubconf.py --model yolov5n: load it and detect on data/images (or a blank image when absent)."""
    import argparse

    from utils.errors import run_cli
    from utils.log import setup_logging

    parser = argparse.ArgumentParser(description="Load a hub model and run it on a few images")
    parser.add_argument("--model", type=str, default="yolov5s", help="model name, e.g. yolov5n or yolov5n-fla")
    parser.add_argument("--path", type=str, default=None, help="weights file (default: <model>.pt here or in repo)")
    opt = parser.parse_args(argv)
    run_cli(_demo)(opt.model, opt.path, setup_logging)


def _demo(name: str, path, setup_logging) -> None:
    """Detect with the named model on data/images (here, else the repository's; files, PIL, arrays); print, save."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from utils.paths import ROOT

    setup_logging()
    model = _create(name, pretrained=True, path=path)
    folder = next((d for d in (Path("data/images"), ROOT / "data" / "images") if d.is_dir()), Path("data/images"))
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    ims = [str(f) for f in files[:1]] + [Path(f) for f in files[:1]] + [Image.open(f) for f in files[1:2]]
    ims.append(np.zeros((320, 640, 3), np.uint8))
    results = model(ims, size=320)
    results.print()
    results.save(Path("runs/detect/exp"))  # relative to the current folder, as YOLOv5 saves hub results


if __name__ == "__main__":
    main()
