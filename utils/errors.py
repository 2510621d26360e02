"""Expected, user-facing errors: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A problem with the user's input (paths, flags, files) that they can fix. exit_code 2 = usage error."""

    exit_code = 2


class ArgumentError(UserError, ValueError):
    """A value out of range given to a library call (an NMS threshold): a ValueError to Python callers."""


class DataError(UserError):
    """A dataset or image that cannot be used as given."""

    exit_code = 1


class CheckpointError(UserError):
    """A weights file that cannot be used: damaged, foreign, or holding a model that does not fit its own yaml."""

    exit_code = 1


class OutputError(UserError):
    """An output that cannot be written: a full disk, a read-only folder (the message names the path)."""

    exit_code = 1


class UnsafeCheckpointError(UserError):
    """A checkpoint whose pickle asks to import or call something that is not a tensor or a plain container."""

    exit_code = 1


def run_cli(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a script's main(): UserError -> 'error: message' on stderr and sys.exit(code); an OSError -> one
    'error:' line and exit 1; Ctrl-C -> exit 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            logging.shutdown()
            print(f"error: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except OSError as e:  # an unexpected I/O failure (a full disk mid-write): still one line, naming the file
            logging.shutdown()
            where = f" {e.filename}" if getattr(e, "filename", None) else ""
            print(f"error: cannot write or read{where}: {e.strerror or e}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
