"""The worker's CPU priority: raised to the configured niceness, never lowered."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, run_cli
from worker.process_priority import DEFAULT_WORKER_NICE, MAX_NICE, lower_priority


def niceness_after(target: int, *, started_at: int = 0) -> int:
    """The niceness a fresh process (started ``started_at`` nicer than this one) reports after
    ``lower_priority(target)``: a process cannot get its priority back, so not this one."""
    code = (
        "from worker.process_priority import lower_priority; import os; "
        f"lower_priority({target}); print(os.nice(0))"
    )
    proc = subprocess.run(
        ["nice", "-n", str(started_at), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=60,
    )
    return int(proc.stdout)


def test_the_niceness_is_raised_to_the_target() -> None:
    base = os.nice(0)
    assert niceness_after(DEFAULT_WORKER_NICE) == max(base, DEFAULT_WORKER_NICE)
    assert niceness_after(MAX_NICE) == MAX_NICE


def test_zero_leaves_the_niceness_and_a_nicer_start_is_kept() -> None:
    base = os.nice(0)
    assert niceness_after(0) == base
    # Started at 15 by an operator: a target of 10 must not bring it back up (nor could it).
    assert niceness_after(10, started_at=15) == min(MAX_NICE, base + 15)


@pytest.mark.parametrize("target", [-1, MAX_NICE + 1])
def test_a_niceness_outside_linux_range_is_refused(target: int) -> None:
    before = os.nice(0)
    with pytest.raises(ValueError, match="niceness must be 0 to 19"):
        lower_priority(target)
    assert os.nice(0) == before


def test_a_bad_worker_niceness_is_one_line_not_a_traceback() -> None:
    proc = run_cli("worker", env={"MEDLINE_WORKER_NICE": "25"}, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert "Traceback" not in err
    assert "MEDLINE_WORKER_NICE: Input should be less than or equal to 19" in err
