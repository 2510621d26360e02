"""Print (or write into docs/models.md) the model zoo table: parameters and GFLOPs of every config in models/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.yolo import DetectionModel  # noqa: E402
from utils.flops import model_gflops  # noqa: E402
from utils.model_info import count_layers  # noqa: E402

START, END = "<!-- ZOO -->", "<!-- /ZOO -->"


def _order(cfg: Path) -> tuple:
    """Stock configs first, then variants; sizes in n, s, m, l, x order."""
    size, _, variant = cfg.stem[len("yolov5") :].partition("-")
    return (bool(variant), variant, "nsmlx".find(size))


def zoo_table(imgsz: int = 640) -> str:
    """Markdown table of layers, parameters and GFLOPs (at imgsz, 80 classes) for each models/*.yaml."""
    rows = [f"| config | layers | parameters | GFLOPs @{imgsz} |", "|---|---:|---:|---:|"]
    for cfg in sorted((ROOT / "models").glob("yolov5*.yaml"), key=_order):
        model = DetectionModel(cfg, verbose=False)
        n_layers = count_layers(model)
        n_params = sum(p.numel() for p in model.parameters())
        rows.append(f"| `{cfg.name}` | {n_layers} | {n_params:,} | {model_gflops(model, imgsz):.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the table in docs/models.md")
    parser.add_argument("--imgsz", type=int, default=640)
    opt = parser.parse_args()
    table = zoo_table(opt.imgsz)
    print(table)
    if opt.write:
        readme = ROOT / "docs" / "models.md"
        text = readme.read_text()
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        readme.write_text(f"{head}{START}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
