"""clip_and_step: one host read per optimizer step, and a non-finite loss or gradient skips the step."""

from __future__ import annotations

import torch
import torch.nn as nn

from utils.train.optim import clip_and_step


def _setup():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return net, opt, torch.amp.GradScaler("cuda", enabled=False)


def test_finite_step_applies_and_zeroes_grads():
    net, opt, scaler = _setup()
    before = net.weight.detach().clone()
    net(torch.ones(4, 3)).sum().backward()
    stepped, bad = clip_and_step(opt, net, scaler, torch.zeros(()))
    assert stepped and bad == 0 and not torch.equal(before, net.weight)
    assert all(p.grad is None or not p.grad.any() for p in net.parameters())


def test_counted_bad_loss_skips_the_step():
    net, opt, scaler = _setup()
    before = net.weight.detach().clone()
    net(torch.ones(4, 3)).sum().backward()  # finite gradients, but a batch of this window had a non-finite loss
    stepped, bad = clip_and_step(opt, net, scaler, torch.tensor(2.0))
    assert not stepped and bad == 2 and torch.equal(before, net.weight)


def test_nonfinite_gradient_skips_the_step():
    net, opt, scaler = _setup()
    before = net.weight.detach().clone()
    (net(torch.ones(4, 3)).sum() * float("nan")).backward()
    stepped, bad = clip_and_step(opt, net, scaler)
    assert not stepped and bad == 0 and torch.equal(before, net.weight)
