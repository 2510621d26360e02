"""Run training jobs one at a time here, or in parallel as Ray tasks across a cluster (Ray is optional).

A job trains into a temporary folder on whichever node runs it and comes back as one packed archive of that
folder; the caller unpacks it beside its final place and renames it in, so a run folder is whole or absent,
never half-written, and a node that dies loses only its running job (Ray runs it again, once).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from utils.errors import UserError

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
MAX_RETRIES = 1  # a job whose node or worker dies, or that raises, runs once more
LOCAL_OBJECT_STORE = 200 * 2**20  # bytes, for `--ray` / `--ray local`


# ---- run folders as archives -----------------------------------------------------------------------------------
def pack_dir(path: Path, skip: Iterable[str] = ()) -> bytes:
    """A gzip'd tar of the folder's contents (names relative to it), leaving out top-level entries named in skip."""
    skip = set(skip)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(Path(path).iterdir()):
            if p.name not in skip:
                tar.add(p, arcname=p.name)
    return buf.getvalue()


def unpack_into(data: bytes, dest: Path) -> Path:
    """Unpack pack_dir's archive as folder dest: into a hidden temporary sibling, then one rename (replacing dest)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.incoming-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")  # 'data': no absolute paths, links out or devices
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{time.time_ns()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def clean_incoming(folder: Path) -> int:
    """Remove the temporary folders a killed driver left in folder; returns how many."""
    n = 0
    for p in Path(folder).glob(".*.incoming-*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def scratch_dir(kind: str) -> Path:
    """A new temporary folder `yolov5fla-<kind>-<pid>-*` for one job on this node.

    First removes this node's folders of that kind whose process is gone: a job SIGKILLed (or a node's worker
    killed) never runs its own clean-up, so the next job on the node does it.
    """
    for p in Path(tempfile.gettempdir()).glob(f"yolov5fla-{kind}-*-*"):
        pid = p.name.split("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"yolov5fla-{kind}-{os.getpid()}-"))


def node_info() -> Dict[str, str]:
    """{'node_id': Ray's node id ('' outside Ray), 'host': this machine's name}."""
    node = ""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    return {"node_id": node, "host": socket.gethostname()}


@dataclass
class ScriptRun:
    """What run_script_job sends back: the packed run folder, the output, the exit status, where and how long."""

    files: bytes
    log: str
    returncode: int
    seconds: float
    node: Dict[str, str] = field(default_factory=dict)


def run_script_job(script: str, args: List[str], name: str = "run") -> ScriptRun:
    """`python <ROOT/script> args --project TMP --name name --exist-ok` in a temporary folder on this node.

    Raises RuntimeError on a non-zero exit, so Ray retries the job once; a job that fails twice fails the caller.
    """
    tmp = scratch_dir("job")
    t0 = time.time()
    try:
        cmd = [sys.executable, str(ROOT / script), *args, "--project", str(tmp), "--name", name, "--exist-ok"]
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}")
        run = tmp / name
        return ScriptRun(pack_dir(run), proc.stdout, proc.returncode, time.time() - t0, node_info())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- runners ---------------------------------------------------------------------------------------------------
class LocalRunner:
    """Jobs run one after another in this process, each when its result is asked for (the behaviour without --ray)."""

    width = 1

    def __init__(self) -> None:
        self._jobs: Dict[int, Tuple[Callable, tuple]] = {}
        self._next = 0

    def submit(self, fn: Callable, *args: Any) -> int:
        self._next += 1
        self._jobs[self._next] = (fn, args)
        return self._next

    def wait(self, handles: List[int]) -> Tuple[int, Any]:
        """Run the oldest of handles; returns (handle, result). Exceptions propagate (a Ctrl-C stops everything)."""
        h = min(handles)
        fn, args = self._jobs.pop(h)
        return h, fn(*args)


class JobFailed(UserError):
    """A job failed on its first run and on its retry."""

    exit_code = 1


def import_ray():
    """The ray module, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install -r requirements-scale.txt") from None
    return ray


def cluster_address(address: str, timeout: float = 5.0) -> str:
    """address ('auto' or HOST:PORT) as the HOST:PORT of a Ray head that answers; 'auto' is resolved as Ray does
    (RAY_ADDRESS, else the last `ray start` on this machine). UserError when none is found or it does not accept a
    connection within timeout seconds: ray.init would retry a stopped cluster's address for many minutes."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # a Ray without this helper: ray.init resolves and reports it
        return address
    try:
        resolved = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as e:
        raise UserError(f"--ray {address}: no Ray cluster found ({str(e).splitlines()[0]})") from None
    host, _, port = str(resolved).rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        where = ""
        if address == "auto":
            where = " (RAY_ADDRESS)" if os.environ.get("RAY_ADDRESS") else " (the last `ray start` here: since stopped)"
        raise UserError(f"--ray {address}: no Ray cluster answers at {resolved}{where}") from None
    return str(resolved)


def connect(address: Optional[str]) -> Any:
    """Join the Ray cluster at address ('local': start one on this machine; 'auto': the one this machine is in).

    A session already started in this process (e.g. by a test) is used as it is. Workers find this repository
    through PYTHONPATH, so every node needs it at the same path, with the same datasets.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kwargs: Dict[str, Any] = dict(
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    address = address or "local"
    if address == "local":  # always a new one-machine Ray; runs pass its object store, spilling beyond this
        kwargs.update(address="local", object_store_memory=LOCAL_OBJECT_STORE)
    else:
        kwargs["address"] = cluster_address(address)
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError) as e:
        raise UserError(f"--ray {address}: no Ray cluster there ({e})") from None
    return ray


class RayRunner:
    """Jobs as Ray tasks, each asking for one GPU (when the cluster has GPUs) or `cpus` CPUs."""

    def __init__(self, address: Optional[str], cpus: Optional[int] = None):
        self.ray = connect(address)
        total = self.ray.cluster_resources()
        if cpus is None and total.get("GPU", 0) >= 1:
            self.options, self.width = {"num_gpus": 1, "num_cpus": 1}, int(total["GPU"])
        else:
            cpus = cpus or 1
            self.options, self.width = {"num_cpus": cpus}, max(1, int(total.get("CPU", 1) // cpus))
        self.options.update(max_retries=MAX_RETRIES, retry_exceptions=True)
        LOGGER.info(f"Ray: {self.width} jobs at a time, each with {self.options}, cluster {dict(total)}")
        self._remote: Dict[Callable, Any] = {}

    def submit(self, fn: Callable, *args: Any) -> Any:
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(fn)
        return self._remote[fn].options(**self.options).remote(*args)

    def wait(self, handles: List[Any]) -> Tuple[Any, Any]:
        """The first job of handles to finish: (handle, result); JobFailed when it failed twice."""
        done, _ = self.ray.wait(list(handles), num_returns=1)
        try:
            return done[0], self.ray.get(done[0])
        except self.ray.exceptions.RayError as e:
            err = JobFailed(f"a job failed twice on Ray: {str(e).strip().splitlines()[-1][:500]}")
            err.handle = done[0]
            raise err from None


def make_runner(address: Optional[str], cpus: Optional[int] = None):
    """LocalRunner without an address, else a RayRunner on that cluster."""
    return LocalRunner() if address is None else RayRunner(address, cpus)
