"""@in_child: tests that load OpenVINO run in ONE child pytest process per session, never in the suite's own.

OpenVINO's runtime objects, once created in the suite's process, crashed it (SIGSEGV, or a closed sys.stderr) tests
later, as they were torn down. The first in_child test that runs starts one child pytest with every in_child test of
the session (tests/conftest.py lists them after collection); each test then reads its own outcome from the child's
report: it passes, fails (with the child's traceback) or skips (with the child's reason) as it did there. One child
instead of one per test: python, torch, the test modules and OpenVINO load once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List

import pytest

CHILD_ENV = "YOLOV5FLA_OV_CHILD"  # set in the child: the tests run their bodies there
REPORT_ENV = "YOLOV5FLA_CHILD_REPORT"  # the child appends one JSON line per test phase to this file
ROOT = Path(__file__).resolve().parents[1]

SESSION_TESTS: List[str] = []  # node ids of this session's in_child tests (filled by tests/conftest.py)
_RUN: Dict[str, object] = {}  # the child run once made: returncode, output tail, {node id: [phase reports]}


def in_child(test: Callable) -> Callable:
    """Run the test's body in the session's OpenVINO child process (see the module docstring).

    In the suite's process the test takes no fixtures (the child builds them); it must not be parametrized."""
    if os.environ.get(CHILD_ENV):
        test._in_child = True  # type: ignore[attr-defined]
        return test
    assert "parametrize" not in {m.name for m in getattr(test, "pytestmark", [])}, test.__name__

    def run() -> None:
        nodeid = os.environ["PYTEST_CURRENT_TEST"].rsplit(" (", 1)[0]
        reports = _child_reports(nodeid).get(nodeid)
        tail = f"child exit code {_RUN['returncode']}\n{_RUN['output']}"
        assert reports, f"{nodeid} did not run in the child\n{tail}"
        for r in reports:
            assert r["outcome"] != "failed", f"{nodeid} failed in the child ({r['when']}):\n{r['text']}"
        for r in reports:
            if r["outcome"] == "skipped":
                pytest.skip(r["reason"].removeprefix("Skipped: "))
        assert [r["when"] for r in reports] == ["setup", "call", "teardown"], (reports, tail)
        assert _RUN["returncode"] in (0, 1), f"the child crashed:\n{tail}"  # 1: another of its tests failed

    for name in ("__module__", "__name__", "__qualname__", "__doc__"):  # not __wrapped__: pytest would take its
        setattr(run, name, getattr(test, name))  # fixtures, built here for nothing
    run.pytestmark = list(getattr(test, "pytestmark", []))  # type: ignore[attr-defined]
    run._in_child = True  # type: ignore[attr-defined]
    return run


def _child_reports(nodeid: str) -> Dict[str, list]:
    """{node id: its phase reports} from the one child pytest run of SESSION_TESTS (run on the first call)."""
    if nodeid not in SESSION_TESTS:  # never an empty list: the child would run the whole suite
        SESSION_TESTS.append(nodeid)
    if not _RUN:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "reports.jsonl"
            # -s: OpenVINO imports absl, whose logging handler keeps the sys.stderr of its import; run_cli's
            # logging.shutdown() (a script's error exit, run in-process by run_main) closes that stream unless it is
            # the real one, and pytest's captured stderr, once closed, fails every later test
            cmd = [sys.executable, "-m", "pytest", "-qs", "-p", "no:cacheprovider", "--durations=10", *SESSION_TESTS]
            env = {**os.environ, CHILD_ENV: "1", REPORT_ENV: str(report)}
            env.pop("PYTEST_CURRENT_TEST", None)
            r = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=1800)
            print(r.stdout[-3000:])  # the child's durations, shown with -s or on failure
            reports: Dict[str, list] = {}
            for line in report.read_text().splitlines() if report.is_file() else []:
                rep = json.loads(line)
                reports.setdefault(rep["nodeid"], []).append(rep)
        _RUN.update(returncode=r.returncode, output=r.stdout[-4000:] + r.stderr[-2000:], reports=reports)
    return _RUN["reports"]  # type: ignore[return-value]


def write_report(report) -> None:
    """In the child (REPORT_ENV set): append a test phase's outcome to the report file (pytest_runtest_logreport)."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    reason = report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else ""
    text = report.longreprtext[-6000:] if report.failed else ""
    row = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome, "reason": reason, "text": text}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
