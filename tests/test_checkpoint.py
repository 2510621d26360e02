"""Checkpoints: restricted unpickling of official files, refusal of malicious pickles, parity, atomic save."""

from __future__ import annotations

import errno
import os
import subprocess

import numpy as np
import pytest
import torch

from models.load import load_model
from utils.checkpoint import load_checkpoint, model_to_dict, save_checkpoint
from utils.errors import UnsafeCheckpointError, UserError
from utils.safe_pickle import Stub, load_official


class _Shell:
    """Pickles as a call to os.system: what a malicious .pt does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


class _Subprocess:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


@pytest.mark.parametrize("payload", ["system", "eval", "subprocess"])
def test_malicious_pickle_is_refused(tmp_path, payload):
    marker = tmp_path / "MARKER"
    obj = {"system": _Shell(marker), "eval": _Eval(), "subprocess": _Subprocess(marker)}[payload]
    f = tmp_path / "evil.pt"
    torch.save({"model": obj, "epoch": 1}, f)
    with pytest.raises(UnsafeCheckpointError, match="refused") as e:
        load_checkpoint(f)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_malicious_pickle_inside_model_attribute(tmp_path):
    """A payload hidden deep in a module's __dict__ is refused before anything runs."""
    marker = tmp_path / "MARKER"
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))
    model.yaml = {"nc": 1, "evil": _Shell(marker)}
    f = tmp_path / "evil_model.pt"
    torch.save({"model": model}, f)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_official(f)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_protocol4_stack_global_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    f = tmp_path / "evil4.pt"
    torch.save({"model": _Shell(marker)}, f, pickle_protocol=4)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_checkpoint(f)
    assert not marker.exists()


def test_stub_ignores_dunder_state():
    """A BUILD that plants an instance __setstate__ (to be called by a later BUILD) is ignored."""
    stub = Stub()
    stub.__setstate__(({"__setstate__": list, "a": 1}, {"__class__": dict, "b": 2}))
    assert stub.__dict__ == {"_stub_args": (), "a": 1, "b": 2} and type(stub) is Stub


def test_numpy_random_state_is_refused(tmp_path):
    f = tmp_path / "rng.pt"
    torch.save({"rng": np.random.RandomState(0)}, f)
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        load_official(f)


def test_pickled_module_becomes_plain_dict(tmp_path):
    """torch.nn classes are read as inert stubs; fp16 -> fp32; numpy best_fitness (interrupted runs) -> float."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    model.yaml, model.names, model.stride = {"nc": 2, "backbone": []}, {0: "a", 1: "b"}, torch.tensor([8.0, 16.0])
    f = tmp_path / "pickled.pt"
    torch.save({"model": model.half(), "ema": None, "best_fitness": np.array([0.25]), "epoch": 5}, f)
    ckpt = load_official(f)
    md = ckpt["model"]
    assert set(md["state_dict"]) == set(model.state_dict())
    assert md["state_dict"]["0.weight"].dtype == torch.float32
    torch.testing.assert_close(md["state_dict"]["0.weight"], model[0].weight.float())
    assert md["yaml"] == {"nc": 2, "backbone": []} and md["names"] == ["a", "b"] and md["stride"] == [8.0, 16.0]
    assert ckpt["best_fitness"] == 0.25 and ckpt["epoch"] == 5 and ckpt["ema"] is None
    torch.save(ckpt, tmp_path / "plain.pt")
    torch.load(tmp_path / "plain.pt", weights_only=True)  # the converted dict holds plain values only


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(UserError, match="not a PyTorch checkpoint or corrupt"):
        load_checkpoint(bad)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(UserError):
        load_checkpoint(empty)
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(2)}, plain)
    with pytest.raises(UserError, match="not a YOLOv5-FLA checkpoint"):
        load_checkpoint(plain)


def test_official_checkpoint_reads_to_plain_dict(shared):
    ckpt = load_checkpoint(shared / "weights" / "yolov5n.pt")
    md = ckpt["model"]
    assert ckpt["format"] == "yolov5-official"
    assert md["yaml"]["nc"] == 80 and md["yaml"]["width_multiple"] == 0.25
    assert md["names"][:2] == ["person", "bicycle"] and len(md["names"]) == 80
    assert md["stride"] == [8.0, 16.0, 32.0]
    sd = md["state_dict"]
    assert "model.0.conv.weight" in sd and "model.24.anchors" in sd and "model.9.cv2.conv.weight" in sd
    assert all(v.dtype != torch.float16 for v in sd.values())
    n_params = sum(
        v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "tracked", "anchors"))
    )
    assert n_params == 1_872_157


def _bus_input(shared):
    cv2 = pytest.importorskip("cv2")
    im = cv2.imread(str(shared / "reference" / "bus_letterboxed_640x480.png"))[:, :, ::-1]  # BGR -> RGB
    x = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))).float()[None] / 255  # (1, 3, 480, 640)
    ref = torch.from_numpy(np.load(shared / "reference" / "bus_yolov5n_raw_output.npy")).float()  # (1, 18900, 85)
    return x, ref


def test_official_parity_raw_output(shared):
    x, ref = _bus_input(shared)
    model = load_model(shared / "weights" / "yolov5n.pt", fuse=False)
    assert not model.training
    with torch.no_grad():
        y = model(x)[0]
    assert y.shape == ref.shape == (1, 18900, 85)
    assert (y[..., :4] - ref[..., :4]).abs().max() < 1e-2  # pixels
    assert (y[..., 4:] - ref[..., 4:]).abs().max() < 1e-4
    fused = load_model(shared / "weights" / "yolov5n.pt", fuse=True)
    with torch.no_grad():
        yf = fused(x)[0]
    assert (yf[..., :4] - ref[..., :4]).abs().max() < 1e-2  # measured 1.4e-3 (unfused 9.2e-4)
    assert (yf[..., 4:] - ref[..., 4:]).abs().max() < 1e-4  # measured 3.8e-6 (unfused 2.3e-6)


def test_save_roundtrip_weights_only(shared, tmp_path):
    model = load_model(shared / "weights" / "yolov5n.pt", fuse=False)
    f = tmp_path / "ours.pt"
    save_checkpoint({"model": model_to_dict(model), "epoch": 3, "opt": {"weights": tmp_path}}, f)
    raw = torch.load(f, weights_only=True)  # must open without any custom class
    assert raw["format"] == "yolov5-fla/1" and raw["epoch"] == 3 and raw["opt"]["weights"] == str(tmp_path)
    assert raw["model"]["state_dict"]["model.0.conv.weight"].dtype == torch.float16
    assert raw["model"]["state_dict"]["model.24.anchors"].dtype == torch.float32
    again = load_model(f, fuse=False)
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        a, b = model(x)[0], again(x)[0]
    assert again.names == model.names
    assert (a - b).abs().max() < 0.1  # fp16 storage of the weights
    assert (a[..., 4:] - b[..., 4:]).abs().max() < 5e-3


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    f = tmp_path / "last.pt"
    save_checkpoint({"model": {"yaml": {"nc": 1}, "state_dict": {}, "names": ["a"], "stride": []}, "epoch": 1}, f)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(UserError, match="No space left"):
        save_checkpoint({"model": {"yaml": {}, "state_dict": {}}, "epoch": 2}, f)
    assert torch.load(f, weights_only=True)["epoch"] == 1  # previous file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


def test_save_removes_temp_files_of_dead_processes(tmp_path):
    dead, live = tmp_path / ".last.pt.999999999.tmp", tmp_path / ".last.pt.1.tmp"  # no such pid / init
    other = tmp_path / ".best.pt.999999999.tmp"
    for f in (dead, live, other):
        f.write_bytes(b"partial")
    save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    assert not dead.exists() and not other.exists() and live.exists()


def test_save_into_unwritable_place(tmp_path):
    blocker = tmp_path / "file.txt"  # a file where a folder should be: fails for root too
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot save checkpoint"):
        save_checkpoint({"model": {"yaml": {}, "state_dict": {}}}, blocker / "x.pt")


def test_save_rejects_unstorable_values(tmp_path):
    with pytest.raises(TypeError, match="opt"):
        save_checkpoint({"opt": {"f": object()}}, tmp_path / "x.pt")
