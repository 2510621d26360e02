"""Training runs that a test kills, each in its own process forked from one pre-imported parent (a zygote).

What such a test checks needs a separate process (SIGKILL, Ctrl-C, resume after them), not a new interpreter: each
`python train.py` start imports torch, torch._dynamo (torch's optimizers import it) and the package again, 3-9 s on
this machine. The zygote (`python tests/zygote.py`, one per test session) imports them once, runs no torch op, and
forks a child per run. The child takes the run's argv, working folder, environment and output files and runs the
script as `python` would (runpy as __main__, `-m module` too), then exits with the script's status. The zygote
reaps it and reports the status; Zygote.popen returns a handle with subprocess.Popen's methods that the tests use
(pid, poll, wait, send_signal, kill, communicate, returncode: -N after signal N).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from subprocess import CompletedProcess
from typing import Dict, List, Optional, Tuple

PRELOAD = ("torch", "torch._dynamo", "cv2", "numpy", "matplotlib", "yaml", "utils.train.run", "utils.train.build",
           "utils.train.epoch", "utils.val.loop", "utils.val.plots", "models.yolo", "models.load")  # fmt: skip


class Run:
    """A forked run as subprocess.Popen shows a child; stdout/stderr go to files, read back by communicate()."""

    def __init__(self, zygote: Zygote, pid: int, out: Path, err: Path):
        self.zygote, self.pid, self.out, self.err = zygote, pid, out, err
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self.returncode = self.zygote.status(self.pid)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        t0 = time.time()
        while self.poll() is None:
            if timeout is not None and time.time() - t0 > timeout:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: Optional[float] = None) -> Tuple[str, str]:
        self.wait(timeout)
        return self.out.read_text(errors="replace"), self.err.read_text(errors="replace")


class Zygote:
    """The parent process (started here) and a thread that records the exit statuses it reports."""

    def __init__(self, cwd: Path, env: Dict[str, str]):
        self.dir, self.cwd = Path(tempfile.mkdtemp(prefix="zygote")), Path(cwd)
        self.exits: Dict[int, int] = {}
        self.lock = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())], cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # so python installs its Ctrl-C handler
        )  # fmt: skip
        assert self.proc.stdout.readline().strip() == "ready", "zygote did not start"
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.pids: List[int] = []
        self.runs = 0
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            kind, *vals = line.split()
            with self.lock:
                if kind == "exit":
                    self.exits[int(vals[0])] = int(vals[1])
                else:
                    self.pids.append(int(vals[0]))
                self.lock.notify_all()

    def popen(self, cmd: List[str], cwd: Path, env: Dict[str, str], capture: bool = False) -> Run:
        """Fork `cmd` ([sys.executable, script or -m module, args...]) in cwd with env; capture: keep its output."""
        assert cmd[0] == sys.executable, cmd
        self.runs += 1  # the files' names: the children create them after the fork, so never count files
        n = self.runs
        out, err = (self.dir / f"{n}.out", self.dir / f"{n}.err") if capture else (Path(os.devnull),) * 2
        with self.lock:
            known = len(self.pids)
            req = {"argv": [str(c) for c in cmd[1:]], "cwd": str(cwd), "env": env, "out": str(out), "err": str(err)}
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            assert self.lock.wait_for(lambda: len(self.pids) > known, timeout=60), "zygote did not fork"
            pid = self.pids[known]
        return Run(self, pid, out, err)

    def run(self, script: str, *args: object, env: Optional[dict] = None, timeout: float = 600) -> CompletedProcess:
        """tests.conftest.run_script's `python <script> args...` from the repository root, forked: CompletedProcess."""
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2", **(env or {})}
        return self.run_cmd([sys.executable, str(self.cwd / script), *map(str, args)], self.cwd, full_env, timeout)

    def run_cmd(self, cmd: List[str], cwd: Path, env: Dict[str, str], timeout: float = 600) -> CompletedProcess:
        """subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout), forked."""
        run = self.popen(cmd, cwd, env, capture=True)
        try:
            out, err = run.communicate(timeout)
        finally:
            run.kill()
        return CompletedProcess(cmd, run.returncode, out, err)

    def status(self, pid: int) -> Optional[int]:
        """The exit status of run pid once the zygote has reaped it; None while it runs."""
        with self.lock:
            if pid in self.exits:
                return self.exits[pid]
        if self.proc.poll() is not None:
            raise RuntimeError(f"the zygote ended (exit {self.proc.returncode}) before run {pid} was reported")
        return None

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the zygote process ---------------------------------------------------------------------------------------
def _child(req: dict) -> None:
    """In the forked child: become the run `python argv...` and exit with its status (never returns)."""
    import runpy
    import traceback

    from benchmarks.in_process import run_as_interpreter

    def run() -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        for fd, path in ((1, req["out"]), (2, req["err"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(f, fd)
            os.close(f)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        argv = req["argv"]
        if argv[0] == "-m":
            sys.argv, sys.path[0] = argv[1:], req["cwd"]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv, sys.path[0] = argv, str(Path(argv[0]).resolve().parent)
            runpy.run_path(argv[0], run_name="__main__")

    code = 1
    try:
        code = run_as_interpreter(run)
    except BaseException:  # Ctrl-C and the like: status 1, with the traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """Import PRELOAD, say 'ready', then fork a child per request line on stdin; report 'pid N' and 'exit N CODE'."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print("ready", flush=True)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    live = set()
    while True:
        if sel.select(timeout=0.01):
            line = sys.stdin.readline()
            if not line:
                break
            pid = os.fork()
            if pid == 0:
                sel.close()
                _child(json.loads(line))
            live.add(pid)
            print(f"pid {pid}", flush=True)
        for pid in list(live):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                live.discard(pid)
                print(f"exit {pid} {os.waitstatus_to_exitcode(status)}", flush=True)
    for pid in live:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository root, as the runs see it
    serve()
