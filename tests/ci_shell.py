"""CI command lines (`python SCRIPT ARGS...`, `python - <<EOF`) run one after another in one child process.

Each `python` start imports torch and the package again (2-5 s here); the official CI steps that only need each
other's outputs share one start instead. The child runs in the checkout, so the steps use its files and its
ROOT-relative defaults (runs/, data/images) as separate `python` runs would; before each step it puts back what a
fresh interpreter would have: sys.argv, sys.path[0] (the script's folder, '' for stdin), the working folder, the
root logger, the warning filters and torch's determinism flags. A step's outcome is its exit status (SystemExit as
the interpreter maps it, 1 with the traceback on stderr for an uncaught exception) and its captured stdout/stderr.

    run_steps(checkout, [["train.py", "--epochs", "1"], ["-", "print(1)"]])  -> [Step, Step]
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import runpy
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from typing import List, NamedTuple


class Step(NamedTuple):
    """What one command line left (as subprocess.CompletedProcess names it)."""

    returncode: int
    stdout: str
    stderr: str


def run_steps(checkout: Path, steps: List[List[str]], timeout: float = 1800) -> List[Step]:
    """Run steps (each [script, *args], or ["-", source] for `python -` with source on stdin) in one child process
    started in checkout with this file's copy there; returns one Step per step."""
    spec, out = checkout / ".ci_steps.json", checkout / ".ci_results.json"
    spec.write_text(json.dumps(steps))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "tests/ci_shell.py", spec.name, out.name]
    r = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0 and out.is_file(), f"ci_shell: exit {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
    return [Step(*s) for s in json.loads(out.read_text())]


def _exit_code(e: SystemExit) -> int:
    """The exit status the interpreter gives SystemExit(code); a non-int code is printed to stderr, status 1."""
    if e.code is None or isinstance(e.code, int):
        return e.code or 0
    print(e.code, file=sys.stderr)
    return 1


def _run_one(step: List[str]) -> int:
    """Run one command line as `python step...` would, in this process; returns its exit status."""
    script, *args = step
    if script == "-":
        sys.argv, sys.path[0] = ["-"], ""
        code = compile(args[0], "<stdin>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    else:
        sys.argv, sys.path[0] = [script, *args], str(Path(script).resolve().parent)
        runpy.run_path(script, run_name="__main__")
    return 0


def main(spec: str, out: str) -> None:
    import torch

    cwd, path, argv = os.getcwd(), list(sys.path), list(sys.argv)
    root = logging.getLogger()
    handlers, level, filters = list(root.handlers), root.level, list(warnings.filters)
    flags = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic
    results = []
    for step in json.loads(Path(spec).read_text()):
        sys.path[:] = path
        o, e = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            try:
                code = _run_one(step)
            except SystemExit as x:
                code = _exit_code(x)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                logging.shutdown()  # flush the step's handlers, as interpreter exit does
        results.append((code, o.getvalue(), e.getvalue()))
        os.chdir(cwd)
        sys.argv = list(argv)
        root.handlers[:], root.level, warnings.filters[:] = handlers, level, filters
        if (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ) != flags:
            torch._C._set_deterministic_algorithms(flags[0], warn_only=flags[1])  # the public call imports inductor
        torch.backends.cudnn.deterministic = cudnn
    Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:3])
