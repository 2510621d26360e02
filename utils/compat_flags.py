"""Official YOLOv5 flags we accept but do not act on: each prints one line, a warning or a usage error (exit 2)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence, Tuple

from utils.errors import UserError

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompatFlag:
    """One accepted-but-unsupported flag: its argparse spelling, what happens, and whether that stops the run.

    fatal=True when ignoring it would give the user something other than what they asked for (e.g. --int8);
    fatal=False when ignoring it changes nothing they rely on (a log level, a cache for a format we do not build).
    """

    names: Tuple[str, ...]
    why: str
    fatal: bool = False
    kwargs: Dict[str, Any] = field(default_factory=lambda: {"action": "store_true"})

    @property
    def dest(self) -> str:
        return self.names[0].lstrip("-").replace("-", "_")


def add_compat_flags(parser: argparse.ArgumentParser, flags: Sequence[CompatFlag], title: str) -> None:
    """Add the flags in a group of their own, each with its official default and a help text saying it is inert."""
    g = parser.add_argument_group(title)
    for f in flags:
        kind = "not supported" if f.fatal else "accepted and ignored"
        g.add_argument(*f.names, **f.kwargs, help=f"YOLOv5 compatibility: {kind}; {f.why}")


def given(opt: argparse.Namespace, f: CompatFlag) -> bool:
    """True when the user set the flag to something other than its default."""
    default = f.kwargs.get("default", False if f.kwargs.get("action") == "store_true" else None)
    return getattr(opt, f.dest, default) != default


def check_compat_flags(opt: argparse.Namespace, flags: Sequence[CompatFlag]) -> None:
    """A UserError (exit 2) for the first fatal flag given; one warning line for each other flag given."""
    for f in flags:
        if f.fatal and given(opt, f):
            raise UserError(f"{f.names[0]} is not supported: {f.why}")
    for f in flags:
        if not f.fatal and given(opt, f):
            LOGGER.warning("WARNING: %s is ignored: %s", f.names[0], f.why)
