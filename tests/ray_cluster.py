"""A two-node Ray cluster on this machine's loopback (a head and a worker with one CPU each), for tests and timings.

Every process a node starts stays in that node's session, so stopping a node kills exactly its session's
processes (Ray's workers move to process groups of their own, so a process-group kill would miss them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> List[int]:
    """Processes whose session id is sid (from /proc)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # after 'pid (comm) ': state ppid pgrp session ...
            if int(fields[3]) == sid:
                pids.append(int(p.name))
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL every process of the session sid (a session this module started)."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    """Return once 127.0.0.1:port accepts a connection, or after timeout seconds (the worker then retries itself)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


class LoopbackCluster:
    """`ray start --head` and `ray start --address` on 127.0.0.1, each --num-cpus 1, 100 MB object store,
    no dashboard; stop() kills both sessions. env: RAY_AUTH_MODE=disabled for the nodes and this process."""

    def __init__(self, log_dir: Path, cpus: int = 1):
        os.environ["RAY_AUTH_MODE"] = "disabled"
        self.port, self.log_dir, self.cpus = free_port(), Path(log_dir), cpus
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: List[subprocess.Popen] = []

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        common = ["--num-cpus", str(self.cpus), "--object-store-memory", str(100 * 2**20), "--disable-usage-stats",
                  "--dashboard-agent-listen-port", str(free_port()), "--block"]  # fmt: skip
        log = open(self.log_dir / f"ray-{name}.log", "w")
        p = subprocess.Popen(["ray", "start", *args, *common], start_new_session=True, stdout=log, stderr=log)
        self.nodes.append(p)
        return p

    def start(self) -> LoopbackCluster:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.head = self._start("head", "--head", "--port", str(self.port), "--include-dashboard", "false",
                                "--ray-client-server-port", str(free_port()))  # fmt: skip
        _wait_for_port(self.port)  # the head's GCS answers: the worker can join
        self.worker = self._start("worker", "--address", self.address)
        return self

    def kill_worker(self) -> None:
        kill_session(self.worker.pid)

    def stop(self) -> None:
        """Kill both nodes, and drop the address file `ray start --head` wrote in /tmp/ray when it is ours: a
        stopped cluster's address there is what `--ray auto` (and ray.init()) would try to join next."""
        for p in reversed(self.nodes):
            kill_session(p.pid)
            p.wait(timeout=30)
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        try:
            if current.read_text().strip().endswith(f":{self.port}"):
                current.unlink()
        except OSError:
            pass

    def __enter__(self) -> LoopbackCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
