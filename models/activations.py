"""The model yaml `activation:` key: a known torch.nn activation with literal arguments, scoped to one model build.

`activation: nn.LeakyReLU(0.1)` makes every `Conv` built by that yaml (act=True) use LeakyReLU(0.1). The choice is
held in a context variable set only while `parse_model` builds the layers, so a later model in the same process
gets SiLU again (official YOLOv5 sets a class attribute instead, which leaks to every later model).
"""

from __future__ import annotations

import ast
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Callable, Iterator

import torch.nn as nn

from utils.errors import UserError

# Parameter-free activations a yaml may name (with or without the `nn.` prefix).
_KNOWN = (nn.SiLU, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.Hardswish, nn.Hardsigmoid,
          nn.Mish, nn.Sigmoid, nn.Tanh, nn.Identity)  # fmt: skip
ACTIVATIONS: dict[str, type] = {c.__name__: c for c in _KNOWN}

ActFactory = Callable[[], nn.Module]
_DEFAULT: ContextVar[ActFactory] = ContextVar("default_activation", default=nn.SiLU)


def _class_name(func: ast.expr) -> str | None:
    """`nn.LeakyReLU` or `LeakyReLU` -> 'LeakyReLU'; any other callee -> None."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "nn":
        return func.attr
    return None


def parse_activation(spec: str) -> ActFactory:
    """'nn.LeakyReLU(0.1)' (or 'nn.SiLU', 'ReLU(inplace=True)') -> a factory making a fresh module per call.

    The text is parsed with `ast` (never evaluated); arguments must be literals (`ast.literal_eval`).
    Anything else is a one-line UserError.
    """
    known = ", ".join(f"nn.{k}" for k in ACTIVATIONS)
    bad = UserError(f"model yaml activation {spec!r} is not supported; use one of {known} with literal arguments")
    if not isinstance(spec, str):
        raise bad
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        raise bad from None
    call = node if isinstance(node, ast.Call) else None
    name = _class_name(call.func if call else node)
    if name not in ACTIVATIONS:
        raise bad
    try:
        args = [ast.literal_eval(a) for a in call.args] if call else []
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords} if call else {}
        if None in kwargs:  # `**mapping`
            raise ValueError("no ** arguments")
        factory = partial(ACTIVATIONS[name], *args, **kwargs)
        factory()  # reject wrong arguments now, not in the middle of a build
    except (ValueError, TypeError, SyntaxError) as e:
        raise UserError(f"model yaml activation {spec!r}: {e}") from None
    return factory


@contextmanager
def activation_scope(spec: str | None) -> Iterator[None]:
    """While active, `default_activation()` builds the yaml's activation (SiLU when spec is None or empty)."""
    token = _DEFAULT.set(parse_activation(spec) if spec else nn.SiLU)
    try:
        yield
    finally:
        _DEFAULT.reset(token)


def default_activation() -> nn.Module:
    """A new instance of the activation of the model being built (SiLU outside any scope)."""
    return _DEFAULT.get()()
