"""ablate.py --ray: a study's unfinished runs as Ray tasks, all submitted at once, each landing whole in its folder.

Every run is train.py in a subprocess on whichever node Ray picks, in a temporary folder there; the finished
folder comes back packed and is renamed into the study folder, so --report-only and restarts read it as a local
run. A run whose node dies is retried once (elsewhere); a run that fails twice is reported at the end.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

Job = Tuple[str, int, Path, List[str]]  # (cfg entry, seed, run folder, train.py flags)


def train_on_ray(jobs: List[Job], opt: argparse.Namespace, record: Callable[[Path, float, Optional[Dict]], Dict]):
    """Train every job on the cluster at opt.ray; record(run_dir, seconds, node) writes each one's study_run.json."""
    from utils.errors import UserError
    from utils.scaleout import JobFailed, RayRunner, clean_incoming, run_script_job, unpack_into

    if not jobs:
        return
    runner = RayRunner(opt.ray, opt.ray_cpus)
    pending = {}
    for entry, seed, run_dir, argv in jobs:
        clean_incoming(run_dir.parent)
        if (run_dir / "weights" / "last.pt").is_file():
            print(f"{run_dir}: an unfinished local run; on Ray it is trained again from the start", flush=True)
        pending[runner.submit(run_script_job, "train.py", argv, run_dir.name)] = (entry, seed, run_dir)
    print(f"Ray: {len(jobs)} runs submitted, {runner.width} at a time", flush=True)
    t0, failed, k = time.time(), [], 0
    while pending:
        try:
            handle, res = runner.wait(list(pending))
        except JobFailed as e:
            entry, seed, run_dir = pending.pop(e.handle)
            failed.append(f"{entry} seed {seed} ({e})")
            continue
        entry, seed, run_dir = pending.pop(handle)
        unpack_into(res.files, run_dir)
        (run_dir.parent / f"{run_dir.name}.log").write_text(res.log)
        record(run_dir, res.seconds, res.node)
        k += 1
        print(
            f"[ray {k}/{len(jobs)}] {entry} seed {seed} done in {res.seconds / 60:.1f} min on {res.node['host']} "
            f"(node {res.node['node_id'][:12]}), study {(time.time() - t0) / 60:.1f} min",
            flush=True,
        )
    if failed:
        raise UserError(f"{len(failed)} run(s) failed twice on Ray: " + "; ".join(failed))
