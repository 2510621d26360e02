"""@in_child: tests that load OpenVINO run in ONE child pytest process per session, never in the suite's own.

OpenVINO's runtime objects, once created in the suite's process, crashed it (SIGSEGV, or a closed sys.stderr) tests
later, as they were torn down. The first in_child test that runs starts one child pytest with every in_child test of
the session (tests/conftest.py lists them after collection); each test then reads its own outcome from the child's
report: it passes, fails (with the child's traceback) or skips (with the child's reason) as it did there. One child
instead of one per test: python, torch, the test modules and OpenVINO load once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import pytest

CHILD_ENV = "YOLOV5FLA_OV_CHILD"  # set in the child: the tests run their bodies there
REPORT_ENV = "YOLOV5FLA_CHILD_REPORT"  # the child appends one JSON line per test phase to this file
ROOT = Path(__file__).resolve().parents[1]

SESSION_TESTS: List[str] = []  # node ids of this session's in_child tests (filled by tests/conftest.py)
SESSION_FILES: List[str] = []  # test files run whole in the child by a test of the session (file_in_child)
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


def file_in_child(path: str, needs: Sequence[str] = (), when: bool = True) -> Callable:
    """Decorator of a suite test that runs the test file path (not collected by the suite: no test_ prefix) whole in
    the session's child; the test calls file_outcome(path). It is skipped when a module of needs is not installed;
    when False (e.g. ../shared absent, where the test skips): the child does not run path."""
    missing = [m for m in needs if importlib.util.find_spec(m) is None]

    def mark(test: Callable) -> Callable:
        if missing:
            return pytest.mark.skipif(True, reason=f"not installed: {missing}")(test)
        if when:
            test._child_file = path  # type: ignore[attr-defined]
        return test

    return mark


def file_outcome(path: str) -> str:
    """Run path in the session's child (with its @in_child tests) if not done yet; AssertionError unless every test
    of path passed or skipped and at least one passed. Returns the child's output tail (its durations)."""
    reports = [r for k, v in _child_reports(path).items() if k.startswith(f"{path}::") for r in v]
    tail = f"child exit code {_RUN['returncode']}\n{_RUN['output']}"
    failed = [f"{r['nodeid']} ({r['when']}):\n{r['text']}" for r in reports if r["outcome"] == "failed"]
    assert not failed, "\n".join(failed)
    assert any(r["when"] == "call" and r["outcome"] == "passed" for r in reports), f"no test of {path} passed\n{tail}"
    assert _RUN["returncode"] in (0, 1), f"the child crashed:\n{tail}"  # 1: another of its tests failed
    return tail


def _child_reports(target: str) -> Dict[str, list]:
    """{node id: its phase reports} from the one child pytest run of SESSION_TESTS and SESSION_FILES (run on the
    first call; target, a node id or a file, is added when the session did not list it)."""
    listed = SESSION_FILES if "::" not in target else SESSION_TESTS
    if target not in listed:  # never an empty list: the child would run the whole suite
        listed.append(target)
    if not _RUN:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "reports.jsonl"
            # -s: OpenVINO imports absl, whose logging handler keeps the sys.stderr of its import; run_cli's
            # logging.shutdown() (a script's error exit, run in-process by run_main) closes that stream unless it is
            # the real one, and pytest's captured stderr, once closed, fails every later test
            cmd = [sys.executable, "-m", "pytest", "-qs", "-p", "no:cacheprovider", "--durations=10", *SESSION_TESTS,
                   *SESSION_FILES]  # fmt: skip
            threads = os.environ.get("OMP_NUM_THREADS", "2")
            env = {**os.environ, CHILD_ENV: "1", REPORT_ENV: str(report), "OMP_NUM_THREADS": threads}
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
