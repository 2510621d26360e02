"""Run one of the repository's scripts (`python val.py ARGS...`) in this process: its parse_opt + main, output captured.

A script start imports torch and the package again (seconds on a busy CPU machine); device_check runs val.py,
detect.py and export.py this way. The result reads as subprocess.run's does: the exit status (SystemExit's code, 1
with the traceback on stderr for an uncaught exception), stdout and stderr. The root logger, which the script's main
points at the captured stdout, is put back afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import subprocess
import sys
import traceback
from typing import Callable


def exit_status(e: SystemExit) -> int:
    """The exit status the interpreter gives SystemExit(code): the int, 0 for None, else 1 with the code printed to
    stderr."""
    if e.code is None or isinstance(e.code, int):
        return e.code or 0
    print(e.code, file=sys.stderr)
    return 1


def run_as_interpreter(fn: Callable[[], object]) -> int:
    """Call fn and return the exit status `python` would end with: SystemExit's (exit_status), or 1 with the traceback
    on stderr for an exception. KeyboardInterrupt goes on up (Ctrl-C stops the caller too)."""
    try:
        fn()
    except SystemExit as e:
        return exit_status(e)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


def run_script(script: str, *args: object) -> subprocess.CompletedProcess:
    """`python script args...` (a path under the repository root, e.g. 'val.py') in this process."""
    module = importlib.import_module(script[:-3].replace("/", "."))
    argv = [str(a) for a in args]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_as_interpreter(lambda: module.main(module.parse_opt(argv)))
    finally:
        root.handlers[:], root.level = handlers, level
    return subprocess.CompletedProcess([script, *argv], code, out.getvalue(), err.getvalue())
