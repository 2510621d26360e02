"""Copy a study's small text results (per-run study_run.json, results.csv, opt.yaml, hyp.yaml; the study tables)
into a folder of the repository, so `benchmarks/ablate.py --project <that parent>` on another machine reuses the
finished runs instead of retraining them. Weights and logs stay behind.

    python tools/keep_study.py /work/study/r2 benchmarks/studies/r2
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

KEEP = {"study_run.json", "results.csv", "opt.yaml", "hyp.yaml", "study.md", "study.json", "pooled.json",
        "study.png"}  # fmt: skip


def keep(src: Path, dst: Path) -> int:
    """Copy the KEEP files under src to the same relative paths under dst; -> number of files copied."""
    n = 0
    for f in sorted(src.rglob("*")):
        if f.is_file() and f.name in KEEP and "weights" not in f.relative_to(src).parts:
            out = dst / f.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out)
            n += 1
    return n


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    a = p.parse_args()
    if not a.src.is_dir():
        raise SystemExit(f"error: {a.src} is not a folder")
    print(f"{keep(a.src, a.dst)} files copied to {a.dst}")
