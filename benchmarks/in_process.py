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


def exit_status(e: SystemExit) -> int:
    """The exit status the interpreter gives SystemExit(code): the int, 0 for None, else 1 with the code printed to
    stderr."""
    if e.code is None or isinstance(e.code, int):
        return e.code or 0
    print(e.code, file=sys.stderr)
    return 1


def run_script(script: str, *args: object) -> subprocess.CompletedProcess:
    """`python script args...` (a path under the repository root, e.g. 'val.py') in this process."""
    module = importlib.import_module(script[:-3].replace("/", "."))
    argv = [str(a) for a in args]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                module.main(module.parse_opt(argv))
            except SystemExit as e:
                code = exit_status(e)
            except Exception:  # a bug: as the interpreter would end the script
                traceback.print_exc()
                code = 1
    finally:
        root.handlers[:], root.level = handlers, level
    return subprocess.CompletedProcess([script, *argv], code, out.getvalue(), err.getvalue())
