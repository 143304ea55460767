"""``manage.py cgrun`` and ``manage.py cgroup``: work into and out of the group.

cgrun replaces its own process with the command, so it runs as a real
subprocess. The v1 tests need root and this machine's v1 cpu hierarchy; each
uses its own ``cpusched-test-<pid>-<n>`` group and removes it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from scheduling.cgroups import CgroupV2, open_backend
from tests.cgroup_fakes import FakeV2

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"
V1_ROOTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpuacct"))
_counter = itertools.count()

needs_v1 = pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(V1_ROOTS[0] / "cgroup.procs", os.W_OK),
    reason="needs root and a writable cgroup v1 cpu hierarchy",
)


def cgrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(MANAGE), "cgrun", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def v1_group() -> Iterator[str]:
    """A unique group name; afterwards its processes are killed and it is gone."""
    top = f"cpusched-test-{os.getpid()}-{next(_counter)}"
    yield f"{top}/workload"
    for root in V1_ROOTS:
        for group in (root / top / "workload", root / top):
            if group.exists():
                for pid in (group / "cgroup.procs").read_text().split():
                    os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.1)
                group.rmdir()


# cgrun -----------------------------------------------------------------------------


def test_cgrun_passes_the_exit_status_through() -> None:
    result = cgrun("--backend", "dry-run", "--", "sh", "-c", "exit 7")

    assert result.returncode == 7
    assert "Not capped: cgroup.backend is dry-run" in result.stderr


def test_cgrun_leaves_options_after_the_separator_to_the_command() -> None:
    result = cgrun("--backend", "dry-run", "--", "echo", "--backend", "-v", "3")

    assert result.returncode == 0
    assert result.stdout == "--backend -v 3\n"


def test_cgrun_without_a_command_says_how_to_call_it() -> None:
    result = cgrun("--backend", "dry-run")

    assert result.returncode == 1
    assert "Give the program to run after '--'" in result.stderr


def test_cgrun_of_a_missing_program_exits_127() -> None:
    result = cgrun("--backend", "dry-run", "--", "no-such-program-cpusched")

    assert result.returncode == 127
    assert "Cannot run 'no-such-program-cpusched'" in result.stderr


@pytest.mark.cgroup_v1
@needs_v1
def test_cgrun_puts_the_command_and_its_children_in_the_group(v1_group: str) -> None:
    script = "cat /proc/self/cgroup; sh -c 'cat /proc/self/cgroup'"

    result = cgrun("--backend", "v1", "--group", v1_group, "--", "sh", "-c", script)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f":cpu:/{v1_group}\n") == 2
    assert result.stdout.count(f":cpuacct:/{v1_group}\n") == 2


@pytest.mark.cgroup_v1
@needs_v1
def test_cgrun_takes_the_group_from_the_environment_like_runscheduler(
    v1_group: str,
) -> None:
    env = {"CPUSCHED_CGROUP_GROUP": v1_group, "CPUSCHED_CGROUP_BACKEND": "v1"}

    result = cgrun("--", "cat", "/proc/self/cgroup", env=env)

    assert result.returncode == 0, result.stderr
    assert f":cpu:/{v1_group}\n" in result.stdout


# cgroup status and list against a fake v2 tree --------------------------------------


def fake_backend(tmp_path: Path) -> CgroupV2:
    fake = FakeV2(tmp_path / "cg2")
    backend = CgroupV2(fake.root, "cpusched/workload", 100_000, 2, fake)
    return backend


def call_cgroup(root: Path, *args: str) -> str:
    out = StringIO()
    call_command("cgroup", "--backend", "v2", "--root", str(root), *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_status_of_a_group_not_created_yet_says_who_creates_it(
    tmp_path: Path,
) -> None:
    backend = fake_backend(tmp_path)

    output = call_cgroup(backend.root, "status")

    assert f"path      {backend.path}\n" in output
    assert "not created yet (runscheduler or cgrun creates it)" in output


@pytest.mark.django_db
def test_status_shows_the_cap_read_back_usage_and_members(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path)
    backend.prepare()
    backend.write_cap(15)
    (backend.path / "cpu.stat").write_text(
        "usage_usec 2500000\nnr_periods 40\nnr_throttled 12\n"
    )
    (backend.path / "cgroup.procs").write_text(f"{os.getpid()}\n")

    output = call_cgroup(backend.root, "status")

    assert "backend   v2\n" in output
    assert "(30000 us per 100000 us)" in output
    assert "usage     2.500 s of CPU since created\n" in output
    assert "throttled 12 of 40 periods\n" in output
    assert f"members   1: {os.getpid()} (" in output


@pytest.mark.django_db
def test_status_as_json_carries_the_same_facts(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path)
    backend.prepare()
    (backend.path / "cpu.max").write_text("max 100000\n")

    state = json.loads(call_cgroup(backend.root, "status", "--json"))

    assert state["backend"] == "v2"
    assert state["cap_percent"] is None
    assert state["period_us"] == 100_000
    assert state["members"] == []


@pytest.mark.django_db
def test_list_prints_each_member_with_its_command_line(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path)
    backend.prepare()
    (backend.path / "cgroup.procs").write_text(f"{os.getpid()}\n")

    output = call_cgroup(backend.root, "list")

    assert output.split()[0] == str(os.getpid())
    assert "pytest" in output or "python" in output


@pytest.mark.django_db
def test_attaching_pid_1_is_refused_by_the_command(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path)
    backend.prepare()

    with pytest.raises(CommandError, match="Could not attach 1"):
        call_cgroup(backend.root, "attach", "1")

    assert backend.members() == []


# cgroup attach and detach for real on v1 -------------------------------------------


@pytest.mark.cgroup_v1
@pytest.mark.django_db
@needs_v1
def test_attach_list_and_detach_a_real_process(v1_group: str) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        out = StringIO()
        group_args = ["--backend", "v1", "--group", v1_group]

        call_command("cgroup", *group_args, "attach", str(sleeper.pid), stdout=out)
        call_command("cgroup", *group_args, "list", stdout=out)
        members = open_backend("v1", v1_group).members()
        call_command("cgroup", *group_args, "detach", str(sleeper.pid), stdout=out)

        assert members == [sleeper.pid]
        assert f"Attached {sleeper.pid} (sleep) into" in out.getvalue()
        assert f"{sleeper.pid}  sleep            sleep 30" in out.getvalue()
        assert f"Detached {sleeper.pid} (sleep) out of" in out.getvalue()
        assert open_backend("v1", v1_group).members() == []
    finally:
        sleeper.kill()
        sleeper.wait()
