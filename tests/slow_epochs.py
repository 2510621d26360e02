"""Run a training script with a pause inside every epoch after the first, so that a test's kill or Ctrl-C lands in
epoch 1 however fast this machine is. The pause changes no number: the run stays bitwise the same.

    python -m tests.slow_epochs SECONDS SCRIPT [ARGS...]
"""

from __future__ import annotations

import runpy
import sys
import time
from typing import Any, Iterator

import utils.train.run as run_loop


class _Paused:
    """loader with a pause after its first batch: len() and the batches are the loader's own."""

    def __init__(self, loader: Any, seconds: float):
        self.loader, self.seconds = loader, seconds

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator:
        for i, batch in enumerate(self.loader):
            yield batch
            if i == 0:
                time.sleep(self.seconds)


def main() -> None:
    seconds, script = float(sys.argv[1]), sys.argv[2]
    plain, calls = run_loop.train_one_epoch, []

    def paused(model, criterion, loader, *args: Any, **kwargs: Any):
        calls.append(1)
        return plain(model, criterion, _Paused(loader, seconds) if len(calls) > 1 else loader, *args, **kwargs)

    run_loop.train_one_epoch = paused
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
