"""cgroup v2 for real, inside the cgroup2 guest (tools/cgroup2-vm).

Run with::

    ../shared/tools/cgroup2-vm/run-in-cgroup2-vm.sh -b uml -- \\
        /work/main/.venv/bin/python -m pytest -q tests/test_cgroup_v2_vm.py

In the guest the tests run as root in the root cgroup with every controller
enabled, on one CPU. Elsewhere they are skipped. Every test removes the groups
and processes it made (the guest is thrown away anyway).
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduling.cgroups import OUTSIDE_LEAF, CgroupV2, detect, open_backend
from tests.cgroup_fakes import DOUBLE_FORKED_BUSY_LOOPS

ROOT = Path("/sys/fs/cgroup")


def in_cgroup2_guest() -> bool:
    try:
        controllers = (ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        return False
    return "cpu" in controllers and os.geteuid() == 0


pytestmark = [
    pytest.mark.cgroup_v2_vm,
    pytest.mark.skipif(
        not in_cgroup2_guest(),
        reason="needs a cgroup2 hierarchy with the cpu controller, as root",
    ),
]

_counter = itertools.count()


def kill_all(group: Path) -> None:
    """Kill every process in ``group`` and below, then remove the groups."""
    for child in sorted(group.rglob("cgroup.procs"), reverse=True):
        for _ in range(20):
            pids = [int(p) for p in child.read_text().split() if int(p) != os.getpid()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
    (ROOT / "cgroup.procs").write_text(str(os.getpid()))
    for child in sorted(group.rglob("cgroup.procs"), reverse=True):
        for _ in range(20):
            try:
                child.parent.rmdir()
                break
            except OSError:
                time.sleep(0.05)


@pytest.fixture
def top() -> Iterator[str]:
    name = f"cpusched-vm-{os.getpid()}-{next(_counter)}"
    yield name
    if (ROOT / name).exists():
        kill_all(ROOT / name)


@pytest.fixture
def backend(top: str) -> CgroupV2:
    group = open_backend("v2", f"{top}/workload")
    assert isinstance(group, CgroupV2)
    group.prepare()
    return group


def start_inside(backend: CgroupV2, code: str) -> subprocess.Popen[bytes]:
    """A Python process that starts inside the group (like cgrun)."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        preexec_fn=lambda: backend.attach(os.getpid()),
    )


def one_cpu_percent(backend: CgroupV2, seconds: float) -> tuple[float, int]:
    """The group's CPU over ``seconds`` (% of one CPU) and periods throttled."""
    before, started = backend.cpu_stat(), time.monotonic()
    time.sleep(seconds)
    after, elapsed = backend.cpu_stat(), time.monotonic() - started
    used = after["usage_usec"] - before["usage_usec"]
    throttled = after["nr_throttled"] - before["nr_throttled"]
    return used / elapsed / 1e6 * 100, throttled


def test_the_guest_is_detected_as_v2() -> None:
    assert detect() == "v2"
    assert open_backend("auto", "cpusched/workload").kind == "v2"


def test_a_busy_loop_is_throttled_to_its_cap(backend: CgroupV2) -> None:
    applied = backend.write_cap(20 / backend.cpus)
    busy = start_inside(backend, "while True: pass")
    try:
        time.sleep(0.5)
        used, throttled = one_cpu_percent(backend, 3.0)
    finally:
        busy.kill()
        busy.wait()

    assert (backend.path / "cpu.max").read_text() == "20000 100000\n"
    assert applied.percent == 20 / backend.cpus
    assert used <= 20 * 1.1 + 1
    assert used >= 10
    assert throttled >= 15


def test_four_double_forked_busy_loops_stay_under_the_cap(backend: CgroupV2) -> None:
    code = DOUBLE_FORKED_BUSY_LOOPS
    backend.write_cap(30 / backend.cpus)
    parent = start_inside(backend, code)
    parent.wait(timeout=60)
    time.sleep(0.5)

    used, _ = one_cpu_percent(backend, 3.0)

    assert len(backend.members()) == 4
    assert used <= 30 * 1.1 + 1
    assert used >= 10


def test_the_kernel_takes_0_4_percent_of_one_cpu_as_1000_per_250000(
    backend: CgroupV2,
) -> None:
    backend.write_cap(0.4 / backend.cpus)

    assert (backend.path / "cpu.max").read_text() == "1000 250000\n"


def test_the_kernel_refuses_400_per_100000_which_is_why_we_never_write_it(
    backend: CgroupV2,
) -> None:
    with pytest.raises(OSError) as caught:
        (backend.path / "cpu.max").write_text("400 100000")

    assert caught.value.errno == errno.EINVAL


def test_prepare_moves_processes_out_of_the_parent_so_cpu_can_be_enabled(
    top: str,
) -> None:
    # cpu is a threaded controller: the kernel refuses +cpu in a group with
    # processes only when a child is populated too (else the group could
    # become a thread root). Build that case: a sleeper in a child, another
    # sleeper and this process in the parent.
    parent = ROOT / top
    (parent / "other").mkdir(parents=True)
    inside, beside = (subprocess.Popen(["sleep", "60"]) for _ in range(2))
    (parent / "other" / "cgroup.procs").write_text(str(inside.pid))
    (parent / "cgroup.procs").write_text(str(beside.pid))
    (parent / "cgroup.procs").write_text(str(os.getpid()))
    try:
        with pytest.raises(OSError) as refused:
            (parent / "cgroup.subtree_control").write_text("+cpu")
        backend = open_backend("v2", f"{top}/workload")

        notes = backend.prepare()

        leaf = parent / OUTSIDE_LEAF
        moved = {int(p) for p in (leaf / "cgroup.procs").read_text().split()}
        assert refused.value.errno == errno.EBUSY
        assert moved == {beside.pid, os.getpid()}
        assert "cpu" in (parent / "cgroup.subtree_control").read_text().split()
        assert (backend.path / "cpu.max").exists()
        assert any(str(beside.pid) in note and str(leaf) in note for note in notes)
    finally:
        (ROOT / "cgroup.procs").write_text(str(os.getpid()))
        for sleeper in (inside, beside):
            sleeper.kill()
            sleeper.wait()


def test_detach_moves_a_process_to_the_sibling_leaf(backend: CgroupV2) -> None:
    sleeper = start_inside(backend, "import time; time.sleep(60)")
    try:
        time.sleep(0.2)

        backend.detach(sleeper.pid)

        cgroup = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
        leaf = backend.path.parent / OUTSIDE_LEAF
        assert cgroup == f"0::/{leaf.relative_to(ROOT)}\n"
        assert backend.members() == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_reset_to_max_shows_in_read_cap_and_a_rewrite_fixes_it(
    backend: CgroupV2,
) -> None:
    backend.write_cap(25 / backend.cpus)

    (backend.path / "cpu.max").write_text("max")
    drifted = backend.read_cap()
    restored = backend.write_cap(25 / backend.cpus)

    assert drifted.unlimited is True
    assert restored.quota_us == 25_000
    assert (backend.path / "cpu.max").read_text() == "25000 100000\n"


def test_remove_leaves_no_group_behind(backend: CgroupV2) -> None:
    sleeper = start_inside(backend, "import time; time.sleep(60)")
    try:
        time.sleep(0.2)

        backend.remove()

        assert not backend.path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cgrun_starts_the_command_inside_the_v2_group(top: str) -> None:
    manage = Path(__file__).resolve().parent.parent / "manage.py"
    group = f"{top}/workload"

    result = subprocess.run(
        [sys.executable, str(manage), "cgrun", "--backend", "v2", "--group", group]
        + ["--", "sh", "-c", "cat /proc/self/cgroup; sh -c 'cat /proc/self/cgroup'"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"0::/{group}\n" * 2
