"""benchmarks/device_check.py --device cpu: every check of the GPU script runs (tiny sizes), so it cannot rot."""

from __future__ import annotations

import pytest

from benchmarks.device_check import CHECKS, RUNNERS, main, parse_opt

pytestmark = pytest.mark.slow


def test_device_check_dry_run_walks_every_check(tmp_path, capsys, restore_logging):
    code = main(parse_opt(["--device", "cpu", "--project", str(tmp_path)]))
    out = capsys.readouterr().out
    assert "CPU dry run" in out and set(RUNNERS) == set(CHECKS)
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and not ln.startswith("| check")]
    failed = [r for r in rows if r.endswith("| FAIL |")]
    assert code == 0 and not failed, out[-4000:]
    for name in ("FLA 8x8", "FLA vs SDPA", "train amp", "train fp32", "val.py --half", "detect.py --half",
                 "train epoch speed", "export"):  # fmt: skip
        assert any(name in r for r in rows), (name, rows)
