"""Yaml module names -> classes, and the channel rules that turn a yaml row's args into constructor args."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from utils.errors import UserError

# A rule maps (input channels of the from-layers, yaml args, repeats n, width multiple)
# to (constructor args, output channels, number of copies to build).
Rule = Callable[[list, list, int, float], tuple]


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of divisor >= x (YOLOv5's width rounding)."""
    return int(math.ceil(x / divisor) * divisor)


def _rule_conv(ch_in: list, args: list, n: int, width: float) -> tuple:
    """[c2, *rest] -> [c1, width-scaled c2, *rest]; built n times in a Sequential."""
    c2 = make_divisible(args[0] * width, 8)
    return [ch_in[0], c2, *args[1:]], c2, n


def _rule_csp(ch_in: list, args: list, n: int, width: float) -> tuple:
    """C3 family: [c2, *rest] -> [c1, c2, n, *rest]; built once (n is the block's own depth)."""
    c2 = make_divisible(args[0] * width, 8)
    return [ch_in[0], c2, n, *args[1:]], c2, 1


def _rule_concat(ch_in: list, args: list, n: int, width: float) -> tuple:
    """Output channels = sum of the inputs; args unchanged."""
    return list(args), sum(ch_in), n


def _rule_same(ch_in: list, args: list, n: int, width: float) -> tuple:
    """Channel-preserving, channel-agnostic layer (Upsample): args unchanged."""
    return list(args), ch_in[0], n


def _rule_same_c1(ch_in: list, args: list, n: int, width: float) -> tuple:
    """Channel-preserving layer that needs its channels (BatchNorm2d, FLA): args -> [c1, *args]."""
    return [ch_in[0], *args], ch_in[0], n


def _rule_contract(ch_in: list, args: list, n: int, width: float) -> tuple:
    """Contract [gain]: space-to-depth multiplies the channels by gain**2; args unchanged."""
    gain = args[0] if args else 2
    return list(args), ch_in[0] * gain**2, n


def _rule_expand(ch_in: list, args: list, n: int, width: float) -> tuple:
    """Expand [gain]: depth-to-space divides the channels by gain**2; args unchanged."""
    gain = args[0] if args else 2
    if ch_in[0] % gain**2:
        raise ValueError(f"Expand(gain={gain}) needs channels divisible by {gain**2}, got {ch_in[0]}")
    return list(args), ch_in[0] // gain**2, n


def _rule_detect(ch_in: list, args: list, n: int, width: float) -> tuple:
    """Detect: [nc, anchors] -> [nc, anchors, [channels of each input]]; an int anchors = na per level."""
    args = list(args)
    if len(args) < 2:
        raise ValueError("Detect needs [nc, anchors]")
    if isinstance(args[1], int):
        args[1] = [list(range(args[1] * 2))] * len(ch_in)
    return [args[0], args[1], list(ch_in), *args[2:]], 0, 1


def _rule_segment(ch_in: list, args: list, n: int, width: float) -> tuple:
    """Segment: [nc, anchors, nm, npr] -> [nc, anchors, nm, width-scaled npr, [channels of each input]]."""
    args = list(args)
    if len(args) < 4:
        raise ValueError("Segment needs [nc, anchors, nm, npr]")
    if isinstance(args[1], int):
        args[1] = [list(range(args[1] * 2))] * len(ch_in)
    return [args[0], args[1], args[2], make_divisible(args[3] * width, 8), list(ch_in), *args[4:]], 0, 1


RULES: dict[str, Rule] = {
    "conv": _rule_conv,
    "csp": _rule_csp,
    "concat": _rule_concat,
    "same": _rule_same,
    "same_c1": _rule_same_c1,
    "contract": _rule_contract,
    "expand": _rule_expand,
    "detect": _rule_detect,
    "segment": _rule_segment,
}


@dataclass(frozen=True)
class Entry:
    """A registered yaml name: the class to build, how its arguments are derived, and keyword defaults."""

    cls: type
    rule: Rule
    defaults: tuple = ()  # (name, value) pairs passed to cls unless the yaml row names them

    def build(self, args: list, kwargs: dict):
        """cls(*args, **defaults updated by kwargs)."""
        return self.cls(*args, **{**dict(self.defaults), **kwargs})


REGISTRY: dict[str, Entry] = {}


def register(cls: type | None = None, *, names: tuple = (), rule: str | None = None, defaults: dict | None = None):
    """Register a block under its class name (or `names`); rule defaults to the class's `channel_rule`.

    Used as a decorator where a block is defined (`@register` or `@register(names=(...), rule="same")`), so this
    module knows no concrete block; `register(MyBlock)` works as a plain call too.
    """

    def add(c: type) -> type:
        r = rule or getattr(c, "channel_rule", None)
        if r not in RULES:
            raise ValueError(f"{c.__name__}: unknown channel rule {r!r}; known: {sorted(RULES)}")
        for name in names or (c.__name__,):
            REGISTRY[name] = Entry(c, RULES[r], tuple((defaults or {}).items()))
        return c

    return add if cls is None else add(cls)


# torch.nn layers a yaml may name, by an explicit list (never an attribute lookup on a yaml string):
# upsampling, pooling, padding, identity (channel-preserving), BatchNorm2d and ConvTranspose2d (channel rules).
for _layer in (nn.Upsample, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d, nn.ZeroPad2d,
               nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.Identity):  # fmt: skip
    register(_layer, names=(f"nn.{_layer.__name__}",), rule="same")
del _layer
register(nn.Upsample, names=("Upsample",), rule="same")
# YOLOv5 gives every BatchNorm2d eps 1e-3, momentum 0.03 (as Conv's own).
register(
    nn.BatchNorm2d, names=("nn.BatchNorm2d", "BatchNorm2d"), rule="same_c1", defaults={"eps": 1e-3, "momentum": 0.03}
)
register(nn.ConvTranspose2d, names=("nn.ConvTranspose2d",), rule="conv")


def _substitute(args: list, d: dict) -> list:
    """yaml args: the strings 'nc' and 'anchors' -> the top-level values, 'None' -> None; nothing is eval'd."""
    table = {"nc": d.get("nc"), "anchors": d.get("anchors"), "None": None}
    return [table[a] if isinstance(a, str) and a in table else a for a in args]


def _check_row(i: int, row) -> tuple:
    """Validate one [from, number, module, args] row; UserError naming the layer otherwise."""
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise UserError(f"layer {i}: expected [from, number, module, args], got {row!r}")
    f, n, name, args = row
    fs = f if isinstance(f, list) else [f]
    if not fs or not all(isinstance(j, int) and not isinstance(j, bool) for j in fs):
        raise UserError(f"layer {i}: 'from' must be an int or a list of ints, got {f!r}")
    if any(j != -1 and not (0 <= (i + j if j < 0 else j) < i) for j in fs):
        raise UserError(f"layer {i}: 'from' {f!r} points outside layers 0..{i - 1}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UserError(f"layer {i}: 'number' must be a positive int, got {n!r}")
    if not isinstance(args, list):
        raise UserError(f"layer {i}: args must be a list, got {args!r}")
    return f, n, name, args


def _split_kwargs(i: int, args: list) -> tuple[list, dict]:
    """A trailing mapping in yaml args names options: [8, {ratio: 0.5}] -> ([8], {'ratio': 0.5})."""
    if not args or not isinstance(args[-1], dict):
        return args, {}
    kwargs = args[-1]
    bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier() or k.startswith("_")]
    if bad:
        raise UserError(f"layer {i}: option names must be plain identifiers, got {bad!r}")
    return args[:-1], dict(kwargs)


def known_names() -> list[str]:
    """All registered yaml module names, sorted."""
    return sorted(REGISTRY)


def resolve(name: str, index: int | None = None) -> Entry:
    """The registry entry for a yaml module name; UserError naming the layer and the known names otherwise."""
    if not isinstance(name, str) or name not in REGISTRY:
        where = f"layer {index}: " if index is not None else ""
        raise UserError(f"{where}unknown module {name!r}; known modules: {', '.join(known_names())}")
    return REGISTRY[name]
