"""One runscheduler per data directory and per cgroup group.

The locks are ``flock``s: the tests hold them from real, separate processes
(a second open file is enough for flock to conflict), check that a second
holder is refused with the first one's pid, and that a dead holder leaves
nothing that blocks the next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from scheduling import control
from scheduling.control import AlreadyRunning, group_lock_path, take_lock
from scheduling.management.commands.runscheduler import lock_data_dir, lock_group

ROOT = Path(__file__).resolve().parent.parent
HOLD = """
import sys, time
from pathlib import Path
from scheduling.control import take_lock
take_lock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


class GroupBackend:
    kind = "v2"

    def __init__(self, path: Path) -> None:
        self.path = path


def stop(process: subprocess.Popen[str]) -> None:
    """End a process this test started, by its pid."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding an exclusive lock on tmp_path/held.lock."""
    path = tmp_path / "held.lock"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        yield process, path
    finally:
        stop(process)


def test_a_lock_held_by_another_process_is_refused_with_its_pid(holder) -> None:
    process, path = holder

    with pytest.raises(AlreadyRunning) as refused:
        take_lock(path)

    assert refused.value.pid == process.pid
    assert str(refused.value) == f"pid {process.pid}, lock {path}"


def test_the_lock_is_free_as_soon_as_its_holder_dies(holder) -> None:
    process, path = holder

    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=5)

    with take_lock(path) as lock:
        assert path.read_text() == f"{os.getpid()}\n"
    assert lock.fd == -1


def test_two_open_files_in_one_process_conflict_too(tmp_path: Path) -> None:
    path = tmp_path / "run" / "x.lock"

    with take_lock(path):
        with pytest.raises(AlreadyRunning) as refused:
            take_lock(path)

    assert refused.value.pid == os.getpid()
    take_lock(path).release()


def test_the_group_lock_is_named_after_the_group_in_the_first_writable_dir(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-dir"

    path = group_lock_path(
        Path("/sys/fs/cgroup/cpusched/workload"), (missing, tmp_path)
    )

    assert path == tmp_path / "cpusched-sys-fs-cgroup-cpusched-workload.lock"


def test_a_second_scheduler_on_the_same_group_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "LOCK_DIRS", (tmp_path,))
    group = Path("/sys/fs/cgroup/cpusched/workload")
    path = group_lock_path(group)
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"held"

        with pytest.raises(CommandError) as refused:
            lock_group(GroupBackend(group))
    finally:
        stop(process)

    assert str(refused.value) == (
        f"runscheduler already controls cgroup group {group} (pid {process.pid}, "
        f"lock {path}); stop it first, or give this one another cgroup.group"
    )
    with lock_group(GroupBackend(group)):
        pass


def test_a_second_scheduler_on_the_same_data_directory_is_refused(
    tmp_path: Path,
) -> None:
    with lock_data_dir(tmp_path):
        with pytest.raises(CommandError) as refused:
            lock_data_dir(tmp_path)

    lock = tmp_path / "run" / "runscheduler.lock"
    assert str(refused.value) == (
        f"runscheduler is already running for this data directory {tmp_path} "
        f"(pid {os.getpid()}, lock {lock}); stop it first"
    )


# Two real runscheduler processes ----------------------------------------------


def manage(data: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPUSCHED_")}
    env["CPUSCHED_DATA_DIR"] = str(data)
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_pid(path: Path, pid: int, timeout: float) -> None:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if path.exists() and path.read_text().strip() == str(pid):
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never named pid {pid}")


@pytest.mark.slow
def test_a_second_runscheduler_exits_at_once_and_the_first_runs_on(
    tmp_path: Path,
) -> None:
    migrate = manage(tmp_path, "migrate", "--no-input", "-v", "0")
    assert migrate.wait(timeout=120) == 0, migrate.stderr.read()
    lock = tmp_path / "run" / "runscheduler.lock"
    first = manage(tmp_path, "runscheduler", "--backend", "dry-run", "--duration", "20")
    try:
        wait_for_pid(lock, first.pid, timeout=30)
        time.sleep(1.5)  # let it tick and write the live state

        started = time.monotonic()
        second = manage(tmp_path, "runscheduler", "--backend", "dry-run")
        try:
            _, errors = second.communicate(timeout=30)
        finally:
            stop(second)
        took = time.monotonic() - started

        assert second.returncode != 0
        assert (
            "runscheduler is already running for this data directory "
            f"{tmp_path} (pid {first.pid}, lock {lock}); stop it first"
        ) in errors
        assert took < 10
        assert first.poll() is None
        assert lock.read_text().strip() == str(first.pid)
    finally:
        stop(first)
    assert first.returncode == 0
