"""The fault-injection hooks themselves: bad specs refused by name, the Nth hit kills, unset
is inert, and the clock jump applies after its delay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tasksaga.adapters import faults

SCRIPT = """
import sys
from tasksaga.adapters import faults
for i in range(1, 6):
    print(i, flush=True)
    faults.hit("after_produce_before_delete")
print("survived", flush=True)
"""


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_an_armed_point_sigkills_the_process_on_its_nth_hit() -> None:
    done = _run({faults.FAULT_POINTS_VAR: "after_produce_before_delete:kill@3"})
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2", "3"]
    assert "fault injection: kill at after_produce_before_delete (hit 3)" in done.stderr


def test_exit_action_ends_the_process_with_137() -> None:
    done = _run({faults.FAULT_POINTS_VAR: "after_produce_before_delete:exit"})
    assert (done.returncode, done.stdout.split()) == (137, ["1"])


def test_unset_or_other_points_leave_the_process_alone() -> None:
    env = {k: v for k, v in os.environ.items() if k != faults.FAULT_POINTS_VAR}
    assert _run(env).stdout.split()[-1] == "survived"
    other = _run({faults.FAULT_POINTS_VAR: "after_append_before_commit:kill"})
    assert other.stdout.split()[-1] == "survived"


@pytest.mark.parametrize(("spec", "message"), [
    ("after_apend:kill", "does not name a fault point"),
    ("after_append_before_commit", "does not name a fault point"),
    ("after_append_before_commit:explode", "has action 'explode'"),
    ("after_append_before_commit:kill@x", "must be a whole number"),
    ("after_append_before_commit:kill@0", "counts from 1"),
])
def test_a_bad_fault_spec_is_refused_with_its_reason(spec: str, message: str) -> None:
    with pytest.raises(faults.FaultConfigError, match=message):
        faults.parse_faults(spec)


def test_fault_specs_parse_into_points_actions_and_hits() -> None:
    parsed = faults.parse_faults(
        "after_append_before_produce:kill@3, after_produce_before_delete:exit")
    assert parsed == {
        "after_append_before_produce": faults.Fault("after_append_before_produce", "kill", 3),
        "after_produce_before_delete": faults.Fault("after_produce_before_delete", "exit", 1),
    }


def test_clock_jump_spec() -> None:
    assert faults.parse_clock_jump("3600000@5") == (3_600_000, 5.0)
    assert faults.parse_clock_jump("-3600000") == (-3_600_000, 0.0)
    with pytest.raises(faults.FaultConfigError, match="TASKSAGA_CLOCK_JUMP"):
        faults.parse_clock_jump("an hour")


def test_a_process_clock_jumps_by_the_offset_after_the_delay() -> None:
    script = ("import time\nfrom tasksaga.adapters import clock\n"
              "a = clock.now_ms(); time.sleep(1.2); b = clock.now_ms()\n"
              "print(round((b - a) / 1000))")
    done = subprocess.run([sys.executable, "-c", script],
                          env={**os.environ, faults.CLOCK_JUMP_VAR: "3600000@0.5"},
                          capture_output=True, text=True, timeout=60, check=True)
    assert int(done.stdout) == 3601
