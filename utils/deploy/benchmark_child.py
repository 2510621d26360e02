"""The child side of benchmark.bench_in_child: one row in a fresh interpreter (PaddlePaddle segfaults in
libphi_core.so once TensorFlow has been loaded in the process, and the TensorFlow rows come first in the table)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from utils.deploy.benchmark import bench_one


def child_main() -> None:
    """The child's side: argv[1] is the JSON of bench_in_child's arguments; the row is written to its 'out'."""
    from utils.log import setup_logging

    setup_logging()
    a = json.loads(sys.argv[1])
    row = bench_one(a["name"], a["fmt"], a["int8"], Path(a["pt"]), Path(a["folder"]), argparse.Namespace(**a["opt"]),
                    task=a["task"])  # fmt: skip
    Path(a["out"]).write_text(json.dumps(asdict(row)))
