"""runscheduler with the cgroup v2 backend, inside the cgroup2 guest.

Run with::

    ../shared/tools/cgroup2-vm/run-in-cgroup2-vm.sh -b uml -- \\
        /work/main/.venv/bin/python -m pytest -q tests/test_runscheduler_v2_vm.py

The guest has one CPU and nothing else running, so its whole-machine CPU is
the workload plus the scheduler. A busy loop runs in the managed group under
a 30-second average window at 30 %; the group's own ``cpu.stat`` shows it
throttled and its use over the last window within the rule, and SIGTERM
leaves the safe cap in ``cpu.max``. Elsewhere the test is skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scheduling.cgroups import open_backend, quota_for

ROOT = Path("/sys/fs/cgroup")
PROJECT = Path(__file__).resolve().parent.parent
WINDOW_S = 30
LIMIT = 30.0
RUN_S = 45


def in_cgroup2_guest() -> bool:
    try:
        controllers = (ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        return False
    return "cpu" in controllers and os.geteuid() == 0


pytestmark = [
    pytest.mark.cgroup_v2_vm,
    pytest.mark.slow,
    pytest.mark.skipif(
        not in_cgroup2_guest(),
        reason="needs a cgroup2 hierarchy with the cpu controller, as root",
    ),
]


def usage_usec(group: Path) -> int:
    for line in (group / "cpu.stat").read_text().splitlines():
        key, value = line.split()
        if key == "usage_usec":
            return int(value)
    raise AssertionError(f"no usage_usec in {group / 'cpu.stat'}")


def throttled(group: Path) -> int:
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
    return int(stat.get("nr_throttled", 0))


def test_runscheduler_throttles_a_busy_loop_through_cpu_max(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        CPUSCHED_DATA_DIR=str(tmp_path),
        CPUSCHED_LIMITS_AVG_WINDOW_HOURS=str(WINDOW_S / 3600),
        CPUSCHED_LIMITS_AVG_MAX_USAGE=str(LIMIT),
        CPUSCHED_LIMITS_PEAK_WINDOW_HOURS=str(60 / 3600),
        CPUSCHED_LIMITS_PEAK_MAX_DURATION="5",
        CPUSCHED_LIMITS_PEAK_WARNING_THRESHOLD="3",
        CPUSCHED_LIMITS_PEAK_CRITICAL_THRESHOLD="1",
        CPUSCHED_SCHEDULER_MODE="aggressive",
    )
    python = sys.executable
    subprocess.run(
        [python, "manage.py", "migrate", "-v0"], cwd=PROJECT, env=env, check=True
    )
    name = f"cpusched-vm-run-{os.getpid()}/workload"
    backend = open_backend("v2", name)
    log = tmp_path / "runscheduler.log"
    command = [python, "manage.py", "runscheduler", "--backend", "v2"]
    command += ["--group", name, "--duration", str(RUN_S + 60)]
    with open(log, "wb") as out:
        scheduler = subprocess.Popen(
            command, cwd=PROJECT, env=env, stdout=out, stderr=out
        )
    loop = None
    try:
        deadline = time.monotonic() + 60
        while not (backend.path / "cpu.max").exists():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        loop = subprocess.Popen([python, "-c", "while True: pass"])
        backend.attach(loop.pid)

        time.sleep(RUN_S - WINDOW_S)
        before, started = usage_usec(backend.path), time.monotonic()
        time.sleep(WINDOW_S)
        used = usage_usec(backend.path) - before
        elapsed = time.monotonic() - started
        throttles = throttled(backend.path)

        scheduler.send_signal(signal.SIGTERM)
        returncode = scheduler.wait(timeout=60)
        cpu_max = (backend.path / "cpu.max").read_text().split()
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
        if loop is not None:
            loop.kill()
            loop.wait()
        if backend.exists():
            backend.remove()

    output = log.read_text()
    assert returncode == 0, output
    assert throttles > 0, output
    group_percent = 100.0 * used / (elapsed * 1e6 * backend.cpus)
    assert group_percent <= LIMIT + 2.0, output
    safe = quota_for(LIMIT * 0.95, backend.cpus, 100_000)
    assert cpu_max == [str(safe.quota_us), "100000"], output
