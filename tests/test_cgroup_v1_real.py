"""cgroup v1 for real on this machine: throttle real busy processes.

Needs root and a writable v1 cpu hierarchy. Every test works in its own group
``cpusched-test-<pid>-<n>`` and removes it and its processes afterwards. The
machine is shared, so the caps stay well below one CPU and the assertions
bound usage from above tightly and from below loosely.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduling.cgroups import CgroupError, CgroupV1, open_backend
from tests.cgroup_fakes import DOUBLE_FORKED_BUSY_LOOPS

CPU_ROOT = Path("/sys/fs/cgroup/cpu")

pytestmark = [
    pytest.mark.cgroup_v1,
    pytest.mark.skipif(
        os.geteuid() != 0 or not os.access(CPU_ROOT / "cgroup.procs", os.W_OK),
        reason="needs root and a writable cgroup v1 cpu hierarchy",
    ),
]

BUSY = "while True: pass"
_counter = itertools.count()


def start_busy(backend: CgroupV1, code: str = BUSY) -> subprocess.Popen[bytes]:
    """A busy Python process that starts inside the group (like cgrun)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, "cpusched-test-busy"],
        preexec_fn=lambda: backend.attach(os.getpid()),
    )


def one_cpu_percent(backend: CgroupV1, seconds: float) -> float:
    """The group's own CPU over ``seconds``, in percent of one CPU."""
    used, started = backend.usage_usec(), time.monotonic()
    time.sleep(seconds)
    used, elapsed = backend.usage_usec() - used, time.monotonic() - started
    return used / elapsed / 1e6 * 100


def kill_members(backend: CgroupV1) -> None:
    for _ in range(20):
        pids = backend.members() if backend.exists() else []
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


@pytest.fixture
def backend() -> Iterator[CgroupV1]:
    top = f"cpusched-test-{os.getpid()}-{next(_counter)}"
    group = open_backend("v1", f"{top}/workload")
    assert isinstance(group, CgroupV1)
    group.prepare()
    try:
        yield group
    finally:
        kill_members(group)
        group.remove()
        for root in (CPU_ROOT, Path("/sys/fs/cgroup/cpuacct")):
            if (root / top).exists():
                (root / top).rmdir()


def limit_parent(backend: CgroupV1, quota_us: int, period_us: int) -> None:
    parent = backend.path.parent
    (parent / "cpu.cfs_period_us").write_text(str(period_us))
    (parent / "cpu.cfs_quota_us").write_text(str(quota_us))


def test_a_busy_loop_capped_at_20_percent_of_one_cpu_uses_at_most_that(
    backend: CgroupV1,
) -> None:
    applied = backend.write_cap(20 / backend.cpus)
    busy = start_busy(backend)
    try:
        time.sleep(0.3)
        used = one_cpu_percent(backend, 3.0)
    finally:
        busy.kill()
        busy.wait()

    assert applied.quota_us == 20_000
    assert used <= 20 * 1.1 + 1
    assert used >= 5


def test_four_double_forked_busy_loops_stay_under_the_cap(
    backend: CgroupV1,
) -> None:
    code = DOUBLE_FORKED_BUSY_LOOPS
    backend.write_cap(30 / backend.cpus)
    parent = start_busy(backend, code)
    parent.wait(timeout=30)
    time.sleep(0.3)

    used = one_cpu_percent(backend, 3.0)

    assert len(backend.members()) == 4
    assert parent.pid not in backend.members()
    assert used <= 30 * 1.1 + 1
    assert used >= 5


def test_the_kernel_accepts_0_4_percent_of_one_cpu_as_1000_per_250000(
    backend: CgroupV1,
) -> None:
    applied = backend.write_cap(0.4 / backend.cpus)

    assert (applied.quota_us, applied.period_us) == (1000, 250_000)
    assert (backend.path / "cpu.cfs_quota_us").read_text() == "1000\n"
    assert (backend.path / "cpu.cfs_period_us").read_text() == "250000\n"


def test_changing_the_period_both_ways_under_a_limiting_parent_is_legal(
    backend: CgroupV1,
) -> None:
    limit_parent(backend, 50_000, 100_000)
    path = backend.path.relative_to(CPU_ROOT)

    # 40 % of one CPU at 10 ms, then at 1 s, then at 10 ms again: the wrong
    # order would pass through 400000 us per 10 ms, which v1 refuses.
    for period in (10_000, 1_000_000, 10_000):
        group = CgroupV1(CPU_ROOT, str(path), period, backend.cpus, None, None)
        applied = group.write_cap(40 / backend.cpus)

        assert applied.quota_us == 40 * period // 100
        assert backend.read_cap().period_us == period


def test_a_child_quota_above_the_parents_is_clamped_and_reported(
    backend: CgroupV1,
) -> None:
    limit_parent(backend, 10_000, 100_000)

    applied = backend.write_cap(50)

    assert applied.quota_us == 10_000
    assert applied.period_us == 100_000
    assert "a parent" in applied.note
    assert backend.read_cap() == applied


def test_a_reset_to_unlimited_by_someone_else_shows_in_read_cap(
    backend: CgroupV1,
) -> None:
    backend.write_cap(10)

    (backend.path / "cpu.cfs_quota_us").write_text("-1")

    assert backend.read_cap().unlimited is True


def test_attach_moves_every_thread_of_the_process(backend: CgroupV1) -> None:
    code = (
        "import threading, time\n"
        "for _ in range(3): threading.Thread(target=time.sleep, args=(30,)).start()\n"
        "print('ready', flush=True); time.sleep(30)\n"
    )
    sleeper = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert sleeper.stdout is not None
        sleeper.stdout.readline()

        backend.attach(sleeper.pid)

        tids = {int(t) for t in os.listdir(f"/proc/{sleeper.pid}/task")}
        tasks = {int(t) for t in (backend.path / "tasks").read_text().split()}
        acct = backend.acct_path or backend.path
        acct_tasks = {int(t) for t in (acct / "tasks").read_text().split()}
        assert len(tids) == 4
        assert tids <= tasks
        assert tids <= acct_tasks
    finally:
        sleeper.kill()
        sleeper.wait()


def test_detach_moves_the_process_to_the_parent_in_both_hierarchies(
    backend: CgroupV1,
) -> None:
    busy = start_busy(backend, "import time; time.sleep(30)")
    try:
        time.sleep(0.1)

        backend.detach(busy.pid)

        cgroup = Path(f"/proc/{busy.pid}/cgroup").read_text()
        top = backend.path.parent.name
        assert f"cpu:/{top}\n" in cgroup
        assert f"cpuacct:/{top}\n" in cgroup
        assert backend.members() == []
    finally:
        busy.kill()
        busy.wait()


def test_attaching_a_process_that_does_not_exist_says_so(backend: CgroupV1) -> None:
    with pytest.raises(CgroupError, match="No such process"):
        backend.attach(2**22 + 7)
