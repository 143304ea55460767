"""Attach rules: which processes join the managed group automatically."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduling.attach import (
    Process,
    Rules,
    matches,
    protected,
    read_process,
    rules_from_params,
    scan,
    split_list,
)
from scheduling.cgroups import CgroupError, DryRun

ME = os.getpid()


class Recorder(DryRun):
    """A dry run that accepts any PID (the fake /proc has made-up ones)."""

    def __init__(self, fail: int | None = None) -> None:
        super().__init__(Path("/nonexistent/group"), cpus=1)
        self.fail = fail
        self.attached: list[int] = []

    def _attach(self, pid: int) -> None:
        if self.fail is not None:
            raise CgroupError("Cannot write: Permission denied", errno=self.fail)
        self.attached.append(pid)

    def members(self) -> list[int]:
        return sorted(self.attached)


def fake_process(
    proc: Path,
    pid: int,
    argv: list[str],
    name: str = "",
    uid: int = 1000,
    flags: int = 0,
) -> None:
    base = proc / str(pid)
    base.mkdir(parents=True)
    comm = name or os.path.basename(argv[0])[:15] if argv else name
    rest = ["S", "1", "1", "1", "0", "-1", str(flags)] + ["0"] * 12 + ["777"]
    (base / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")
    (base / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (base / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    fake_process(root, 1, ["/sbin/init"], uid=0)
    fake_process(root, 2, [], name="kthreadd", uid=0, flags=0x00208040)
    fake_process(root, ME, ["python", "manage.py", "runscheduler"], uid=0)
    fake_process(root, 300, ["/usr/bin/ffmpeg", "-i", "in.mkv"], uid=1000)
    fake_process(root, 301, ["/opt/app/very-long-worker-name", "--queue=video"])
    fake_process(root, 302, ["/usr/bin/python3", "batch.py"], uid=1001)
    fake_process(root, 303, ["/usr/sbin/sshd", "-D"], uid=0)
    return root


def test_lists_split_on_commas_and_drop_blanks() -> None:
    assert split_list(" ffmpeg, ,x264,,") == ["ffmpeg", "x264"]
    assert split_list("") == []


def test_rules_come_from_the_cgroup_attach_parameters() -> None:
    rules = rules_from_params(
        {
            "cgroup.attach_names": "ffmpeg, x264",
            "cgroup.attach_cmdline": "--queue=video",
            "cgroup.attach_users": "root, 1001",
        }
    )

    assert rules.names == {"ffmpeg", "x264"}
    assert rules.cmdline == ("--queue=video",)
    assert rules.uids == {0, 1001}
    assert rules.empty is False


def test_an_unknown_user_is_refused_with_what_to_give_instead() -> None:
    with pytest.raises(ValueError, match="'nobody-such-user', which is not a user"):
        rules_from_params({"cgroup.attach_users": "nobody-such-user"})


def test_no_rules_attach_nothing_and_read_nothing(tmp_path: Path) -> None:
    backend = Recorder()

    assert scan(backend, Rules(), proc=tmp_path / "missing") == []


def test_a_name_matches_comm_or_the_file_name_of_argv0(proc: Path) -> None:
    long_name = read_process(proc, 301)
    ffmpeg = read_process(proc, 300)
    assert long_name is not None and ffmpeg is not None

    assert long_name.name == "very-long-worke"
    assert matches(long_name, Rules(names=frozenset({"very-long-worker-name"})))
    assert matches(ffmpeg, Rules(names=frozenset({"ffmpeg"})))
    assert not matches(ffmpeg, Rules(names=frozenset({"ffmpe"})))


def test_a_command_line_substring_matches_across_arguments(proc: Path) -> None:
    ffmpeg = read_process(proc, 300)
    assert ffmpeg is not None

    assert matches(ffmpeg, Rules(cmdline=("ffmpeg -i",)))
    assert not matches(ffmpeg, Rules(cmdline=("x264",)))


def test_scan_attaches_by_name_command_line_and_user(proc: Path) -> None:
    backend = Recorder()
    rules = Rules(
        names=frozenset({"ffmpeg"}),
        cmdline=("--queue=video",),
        uids=frozenset({1001}),
    )

    attached = scan(backend, rules, proc=proc)

    assert attached == [300, 301, 302]


def test_scan_never_attaches_itself_pid_1_or_kernel_threads(proc: Path) -> None:
    backend = Recorder()
    everyone = Rules(
        names=frozenset({"init", "kthreadd", "python"}),
        cmdline=("",),
        uids=frozenset({0, 1000}),
    )

    attached = scan(backend, everyone, proc=proc)

    assert 1 not in attached
    assert 2 not in attached
    assert ME not in attached
    assert attached == [300, 301, 302, 303]


def test_scan_skips_members_it_already_attached(proc: Path) -> None:
    backend = Recorder()
    rules = Rules(names=frozenset({"ffmpeg"}))
    scan(backend, rules, proc=proc)

    assert scan(backend, rules, proc=proc) == []


def test_a_failing_attach_is_logged_once_not_every_scan(
    proc: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = Recorder(fail=errno.EACCES)
    rules = Rules(names=frozenset({"sshd"}))

    with caplog.at_level(logging.WARNING, logger="scheduling.attach"):
        first = scan(backend, rules, proc=proc)
        second = scan(backend, rules, proc=proc)

    assert first == second == []
    warnings = [r for r in caplog.records if "303" in r.getMessage()]
    assert len(warnings) == 1
    assert "Permission denied" in warnings[0].getMessage()


def test_a_process_that_exits_during_the_scan_is_skipped_quietly(
    proc: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = Recorder(fail=errno.ESRCH)

    with caplog.at_level(logging.WARNING, logger="scheduling.attach"):
        attached = scan(backend, Rules(names=frozenset({"ffmpeg"})), proc=proc)

    assert attached == []
    assert caplog.records == []


def test_protection_covers_any_runscheduler_and_empty_command_lines() -> None:
    other = Process(
        5000, "python", ("python", "manage.py", "runscheduler"), 0, 1, False
    )
    zombie_like = Process(5001, "defunct", (), 0, 1, False)
    plain = Process(5002, "python", ("python", "job.py"), 0, 1, False)

    assert protected(other, me=ME) is True
    assert protected(zombie_like, me=ME) is True
    assert protected(plain, me=ME) is False


def test_the_real_proc_is_read_correctly() -> None:
    me = read_process(Path("/proc"), ME)
    kthreadd = read_process(Path("/proc"), 2)
    assert me is not None and kthreadd is not None

    own_argv = Path("/proc/self/cmdline").read_bytes().decode().split("\0")
    assert me.argv == tuple(a for a in own_argv if a)
    assert me.uid == os.geteuid()
    assert me.kernel is False
    assert kthreadd.kernel is True


@pytest.fixture
def marked_sleeper() -> Iterator[subprocess.Popen[bytes]]:
    marker = f"cpusched-attach-test-{ME}"
    code = "import time; time.sleep(30)"
    sleeper = subprocess.Popen([sys.executable, "-c", code, marker])
    time.sleep(0.1)
    yield sleeper
    sleeper.kill()
    sleeper.wait()


def test_scan_finds_a_real_process_by_command_line(
    marked_sleeper: subprocess.Popen[bytes],
) -> None:
    backend = DryRun(Path("/nonexistent/group"), cpus=1)
    rules = Rules(cmdline=(f"cpusched-attach-test-{ME}",))

    attached = scan(backend, rules)

    assert attached == [marked_sleeper.pid]
    assert backend.members() == [marked_sleeper.pid]
