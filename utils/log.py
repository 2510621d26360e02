"""Logging set-up for the scripts: plain messages on stdout, as YOLOv5 prints them."""

from __future__ import annotations

import logging
import sys


def setup_logging(verbose: bool = True, rank: int = -1) -> None:
    """Configure the root logger once: INFO (or WARNING when not verbose / not rank 0), message only."""
    level = logging.INFO if verbose and rank in (-1, 0) else logging.WARNING
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
