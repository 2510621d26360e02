"""ModelEMA decay maths and resume state; optimizer groups, LR lambdas, warmup and nominal-batch helpers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from utils.errors import UserError
from utils.train.ema import ModelEMA
from utils.train.optim import (
    LRLambda,
    accumulate_steps,
    apply_warmup,
    build_optimizer,
    build_scheduler,
    scaled_weight_decay,
    split_parameters,
    warmup_iterations,
)

HYP = dict(warmup_bias_lr=0.1, warmup_momentum=0.8, momentum=0.937)


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.LayerNorm(2))


def test_ema_first_update_matches_formula():
    torch.manual_seed(0)
    model = tiny_net()
    ema = ModelEMA(model)
    before = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    assert ema.decay(1) == pytest.approx(d)
    w = ema.ema.state_dict()["0.weight"]
    assert torch.allclose(w, d * before["0.weight"] + (1 - d) * model.state_dict()["0.weight"], atol=1e-7)
    assert ema.ema.state_dict()["1.num_batches_tracked"].item() == before["1.num_batches_tracked"].item()
    assert not any(p.requires_grad for p in ema.ema.parameters())
    assert ema.decay(10**7) == pytest.approx(0.9999)


def test_ema_state_roundtrip():
    ema = ModelEMA(tiny_net())
    for _ in range(5):
        ema.update(tiny_net())
    other = ModelEMA(tiny_net())
    other.load_state_dict(ema.state_dict())
    assert other.updates == 5 and other.decay(5) == ema.decay(5)


def test_parameter_groups():
    model = tiny_net()
    g = split_parameters(model)
    assert [len(g[k]) for k in ("bias", "weight", "norm")] == [3, 2, 2]
    opt = build_optimizer(model, "SGD", lr=0.01, momentum=0.937, decay=5e-4)
    assert [grp["name"] for grp in opt.param_groups] == ["bias", "weight", "norm"]
    assert [grp["weight_decay"] for grp in opt.param_groups] == [0.0, 5e-4, 0.0]
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[1]["momentum"] == 0.937
    adam = build_optimizer(model, "AdamW", lr=1e-3, momentum=0.9, decay=1e-2)
    assert isinstance(adam, torch.optim.AdamW) and adam.param_groups[1]["betas"] == (0.9, 0.999)
    rms = build_optimizer(model, "RMSProp", lr=1e-3, momentum=0.9, decay=5e-5)  # classify/train.py's official choice
    assert isinstance(rms, torch.optim.RMSprop) and rms.param_groups[0]["momentum"] == 0.9
    assert [grp["weight_decay"] for grp in rms.param_groups] == [0.0, 5e-5, 0.0]
    with pytest.raises(UserError):
        build_optimizer(model, "RMSprop")  # official's spelling only


def test_lr_lambdas():
    lin, cos = LRLambda(20, 0.01), LRLambda(20, 0.01, cosine=True)
    assert lin(0) == 1.0 and lin(20) == pytest.approx(0.01) and lin(7) == pytest.approx(0.6535)
    assert cos(0) == pytest.approx(1.0) and cos(20) == pytest.approx(0.01) and cos(10) == pytest.approx(0.505)
    opt = build_optimizer(tiny_net(), "SGD", lr=0.01)
    sched = build_scheduler(opt, epochs=20, lrf=0.01)
    for _ in range(7):
        opt.step()
        sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.006535)  # official results.csv epoch 7


def test_nominal_batch_helpers():
    assert accumulate_steps(16) == 4 and accumulate_steps(24) == 3 and accumulate_steps(128) == 1
    assert scaled_weight_decay(5e-4, 16) == pytest.approx(5e-4)
    assert scaled_weight_decay(5e-4, 24) == pytest.approx(5e-4 * 72 / 64)
    assert warmup_iterations(3.0, 13) == 100 and warmup_iterations(3.0, 50) == 150 and warmup_iterations(0, 13) == 0


def test_warmup_matches_official_first_epoch():
    # official fine-tune (205 images, batch 16 -> 13 batches, nw = 100): lr logged after the last batch of epoch 0
    opt = build_optimizer(tiny_net(), "SGD", lr=0.01)
    build_scheduler(opt, epochs=20, lrf=0.01)  # sets initial_lr
    acc = apply_warmup(opt, ni=12, nw=100, lr_factor=1.0, hyp=HYP, batch_size=16)
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([0.0892, 0.0012, 0.0012])
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.8 + 0.137 * 0.12)
    assert acc == 1  # interp(12, [0, 100], [1, 4]) = 1.36 -> 1
    assert apply_warmup(opt, ni=100, nw=100, lr_factor=1.0, hyp=HYP, batch_size=16) == 4
