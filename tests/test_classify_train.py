"""classify/train.py on the engine: a tiny run's outputs, and an exact resume after an interruption."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.test_classify import tiny_folder  # noqa: F401  (the session fixture)


def _args(data, project, name, epochs=2):
    return ["--model", "yolov5n.yaml", "--data", str(data), "--epochs", str(epochs), "--img", "32",
            "--batch-size", "4", "--workers", "0", "--device", "cpu", "--project", str(project), "--name", name,
            "--exist-ok", "--noplots", "--pretrained", "False"]  # fmt: skip


class _Interrupting:
    """A training loader that raises KeyboardInterrupt (Ctrl-C) when its at_batch-th batch is asked for, before any
    forward pass of that batch (so the interrupted epoch leaves no trace in the model)."""

    def __init__(self, loader, at_batch: int):
        self.loader, self.at, self.n = loader, at_batch, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        for batch in self.loader:
            self.n += 1
            if self.n == self.at:
                raise KeyboardInterrupt
            yield batch


def test_train_outputs_and_exact_resume(tiny_folder, tmp_path, monkeypatch, restore_logging):  # noqa: F811
    from classify import train
    from models.load import load_model
    from utils.classify import task as task_mod

    ref = train.main(train.parse_opt(_args(tiny_folder, tmp_path, "ref")))
    header = (ref / "results.csv").read_text().splitlines()[0].replace(" ", "").split(",")
    assert header[:5] == ["epoch", "train/loss", "metrics/accuracy_top1", "metrics/accuracy_top5", "val/loss"]
    model = load_model(ref / "weights/best.pt")
    assert type(model).__name__ == "ClassificationModel" and model.names == ["a", "b", "c"]
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3)

    # Ctrl-C at the first batch of epoch 1 (3 batches per epoch), then --resume: the same run as the reference
    def loader(*args, **kwargs):
        dl, ds = task_mod.train_loader(*args, **kwargs)
        return _Interrupting(dl, 4), ds

    interrupting = dataclasses.replace(task_mod.CLASSIFY, train_loader=loader)
    monkeypatch.setattr(task_mod, "CLASSIFY", interrupting)
    with pytest.raises(SystemExit):
        train.main(train.parse_opt(_args(tiny_folder, tmp_path, "cut")))
    monkeypatch.undo()
    last = tmp_path / "cut/weights/last.pt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 0
    del ckpt["train_state"]["results"]  # as official's last.pt: no rows in the checkpoint, the csv's are kept
    torch.save(ckpt, last)
    train.main(train.parse_opt(["--resume", str(last)]))
    assert (tmp_path / "cut/results.csv").read_text() == (ref / "results.csv").read_text()
    assert "weights: yolov5n.yaml\n" in (tmp_path / "cut/opt.yaml").read_text()  # not --model's default
    a = torch.load(ref / "weights/last.pt", weights_only=True)["model"]["state_dict"]
    b = torch.load(last, weights_only=True)["model"]["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_last_batch_of_one_image_is_left_out(tiny_folder, tmp_path, restore_logging):  # noqa: F811
    """12 training images in batches of 11 at 32 px: a last batch of one image with 1x1 features cannot be
    batch-normalised, so training leaves it out (validation keeps every image)."""
    from classify import train
    from utils.classify.dataset import create_classification_dataloader

    loader, _ = create_classification_dataloader(tiny_folder / "train", 32, batch_size=11, workers=0)
    assert len(loader) == 1 and [len(y) for _, y in loader] == [11]
    val, _ = create_classification_dataloader(tiny_folder / "val", 32, batch_size=5, augment=False, workers=0)
    assert [len(y) for _, y in val] == [5, 1]
    big, _ = create_classification_dataloader(tiny_folder / "train", 64, batch_size=11, workers=0)
    assert len(big) == 2  # from 64 px the features are at least 2x2: every image trains, as official
    args = _args(tiny_folder, tmp_path, "b11", epochs=1)
    args[args.index("--batch-size") + 1] = "11"
    run = train.main(train.parse_opt(args))
    assert len((run / "results.csv").read_text().splitlines()) == 2 and (run / "weights/last.pt").is_file()


@pytest.mark.slow
def test_ddp_two_processes(tiny_folder, tmp_path, zygote):  # noqa: F811
    """torchrun with 2 gloo processes on the CPU: the total batch is split, one optimizer step per total batch."""
    import os
    import socket
    import sys

    from tests.conftest import ROOT

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "classify/train.py", *_args(tiny_folder, tmp_path, "ddp", epochs=1)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    r = zygote.run_cmd(cmd, ROOT, env, timeout=900)  # the torchrun launcher forked; its 2 workers are new interpreters
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "batch 2 per process (total 4)" in r.stdout and "3 optimizer steps, accumulate 1" in r.stdout
    assert (tmp_path / "ddp/weights/best.pt").is_file()
