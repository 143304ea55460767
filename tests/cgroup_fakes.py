"""Fake cgroup v2 and v1 trees in a temp dir that obey the kernel's rules.

They subclass :class:`scheduling.cgroups.CgroupFS` and replace only the raw
file operations, so the error translation under test is the real one. The
rules mimicked: files appear on mkdir, ``cgroup.procs`` moves a process out
of every other group of the hierarchy, the no-internal-processes rule (EBUSY),
controllers must be enabled top-down (ENOENT), ``cpu.max`` and CFS bounds
(EINVAL), and cgroup v1's child-quota-not-above-parent rule (EINVAL).

The fake applies the no-internal-processes rule strictly: +cpu in a non-root
group with processes is EBUSY. The kernel is laxer for the threaded cpu
controller (EBUSY only when a child group is populated too); the backend
moves the processes aside in both cases, and the real kernel's case is
tested in tests/test_cgroup_v2_vm.py.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from scheduling.cgroups import CgroupFS


def oserror(code: int, path: Path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


class FakeFS(CgroupFS):
    """What both fakes share: a root, known PIDs, refusals and a write log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.writes: list[tuple[str, str]] = []
        self.denied: set[Path] = set()
        self.unmovable: set[int] = set()
        self.ignore_writes: set[str] = set()

    def _write_raw(self, path: Path, text: str) -> None:
        if path in self.denied:
            raise oserror(errno.EACCES, path)
        if not path.exists():
            raise oserror(errno.ENOENT, path)
        self.writes.append((str(path.relative_to(self.root)), text))
        if path.name in self.ignore_writes:
            return
        self.apply(path, text.strip())

    def apply(self, path: Path, text: str) -> None:
        path.write_text(text + "\n")

    def procs(self, group: Path) -> list[int]:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]

    def set_procs(self, group: Path, pids: list[int]) -> None:
        (group / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))

    def move(self, hierarchy: Path, pid: int, target: Path) -> None:
        if pid in self.unmovable:
            raise oserror(errno.EINVAL, target / "cgroup.procs")
        groups = [p.parent for p in hierarchy.rglob("cgroup.procs")]
        if not any(pid in self.procs(g) for g in groups) and pid != os.getpid():
            raise oserror(errno.ESRCH, target / "cgroup.procs")
        for group in groups:
            self.set_procs(group, [p for p in self.procs(group) if p != pid])
        self.set_procs(target, sorted(self.procs(target) + [pid]))

    def _rmdir_raw(self, path: Path) -> None:
        if self.procs(path) or any(p.is_dir() for p in path.iterdir()):
            raise oserror(errno.EBUSY, path)
        shutil.rmtree(path)


class FakeV2(FakeFS):
    """A cgroup2 hierarchy at ``root`` with cpu available at the root."""

    def __init__(self, root: Path, controllers: str = "cpu io memory pids") -> None:
        super().__init__(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / "cgroup.controllers").write_text(controllers + "\n")
        (root / "cgroup.subtree_control").write_text("\n")
        self.set_procs(root, [1])

    def _mkdir_raw(self, path: Path) -> None:
        os.mkdir(path)
        enabled = (path.parent / "cgroup.subtree_control").read_text()
        (path / "cgroup.type").write_text("domain\n")
        (path / "cgroup.controllers").write_text(enabled)
        (path / "cgroup.subtree_control").write_text("\n")
        self.set_procs(path, [])
        if "cpu" in enabled.split():
            self.add_cpu_files(path)

    def add_cpu_files(self, group: Path) -> None:
        (group / "cpu.max").write_text("max 100000\n")
        (group / "cpu.stat").write_text(
            "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"
            "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
        )

    def apply(self, path: Path, text: str) -> None:
        group = path.parent
        if path.name == "cgroup.procs":
            self.attach(group, int(text))
        elif path.name == "cgroup.subtree_control":
            self.enable(group, text)
        elif path.name == "cpu.max":
            self.cpu_max(path, text)
        else:
            super().apply(path, text)

    def attach(self, group: Path, pid: int) -> None:
        is_root = not (group / "cgroup.type").exists()
        if not is_root and (group / "cgroup.subtree_control").read_text().split():
            raise oserror(errno.EBUSY, group / "cgroup.procs")
        self.move(self.root, pid, group)

    def enable(self, group: Path, text: str) -> None:
        controller = text.lstrip("+")
        if controller not in (group / "cgroup.controllers").read_text().split():
            raise oserror(errno.ENOENT, group / "cgroup.subtree_control")
        if (group / "cgroup.type").exists() and self.procs(group):
            raise oserror(errno.EBUSY, group / "cgroup.subtree_control")
        control = group / "cgroup.subtree_control"
        control.write_text(" ".join(control.read_text().split() + [controller]) + "\n")
        for child in (p for p in group.iterdir() if p.is_dir()):
            (child / "cgroup.controllers").write_text(control.read_text())
            self.add_cpu_files(child)

    def cpu_max(self, path: Path, text: str) -> None:
        fields = text.split()
        quota = fields[0]
        period = int(fields[1]) if len(fields) > 1 else 100_000
        legal_quota = quota == "max" or int(quota) >= 1000
        if not legal_quota or not 1000 <= period <= 1_000_000:
            raise oserror(errno.EINVAL, path)
        path.write_text(f"{quota} {period}\n")


class FakeV1(FakeFS):
    """Separate cpu and cpuacct v1 hierarchies below ``root``, like this host."""

    def __init__(self, root: Path, with_cpuacct: bool = True) -> None:
        super().__init__(root)
        self.cpu = root / "cpu"
        self.cpuacct = root / "cpuacct" if with_cpuacct else None
        self.cpu.mkdir(parents=True)
        self.populate(self.cpu)
        self.set_procs(self.cpu, [1])
        if self.cpuacct:
            self.cpuacct.mkdir()
            self.populate(self.cpuacct)
            self.set_procs(self.cpuacct, [1])

    def populate(self, group: Path) -> None:
        self.set_procs(group, [])
        if group.is_relative_to(self.cpu):
            (group / "cpu.cfs_quota_us").write_text("-1\n")
            (group / "cpu.cfs_period_us").write_text("100000\n")
            (group / "cpu.stat").write_text("nr_periods 0\nnr_throttled 0\n")
        else:
            (group / "cpuacct.usage").write_text("0\n")

    def _mkdir_raw(self, path: Path) -> None:
        os.mkdir(path)
        self.populate(path)

    def apply(self, path: Path, text: str) -> None:
        if path.name == "cgroup.procs":
            hierarchy = self.cpu if path.is_relative_to(self.cpu) else self.cpuacct
            assert hierarchy is not None
            self.move(hierarchy, int(text), path.parent)
        elif path.name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"):
            self.cfs(path, int(text))
        else:
            super().apply(path, text)

    def cfs(self, path: Path, value: int) -> None:
        quota_file = path.name == "cpu.cfs_quota_us"
        legal = (value == -1 or value >= 1000) if quota_file else value >= 1000
        if not legal or (not quota_file and value > 1_000_000):
            raise oserror(errno.EINVAL, path)
        old = path.read_text()
        path.write_text(f"{value}\n")
        if not self.schedulable(self.cpu, None):
            path.write_text(old)
            raise oserror(errno.EINVAL, path)

    def ratio(self, group: Path) -> float | None:
        quota = int((group / "cpu.cfs_quota_us").read_text())
        period = int((group / "cpu.cfs_period_us").read_text())
        return None if quota < 0 else quota / period

    def schedulable(self, group: Path, parent_limit: float | None) -> bool:
        # kernel/sched/core.c tg_cfs_schedulable_down(), cgroup v1 branch.
        own = self.ratio(group)
        if own is not None and parent_limit is not None and own > parent_limit:
            return False
        limit = parent_limit if own is None else own
        children = [p for p in group.iterdir() if p.is_dir()]
        return all(self.schedulable(child, limit) for child in children)


# Four busy grandchildren, each orphaned and in its own session: they have
# left the process tree, but not the cgroup they were started in.
DOUBLE_FORKED_BUSY_LOOPS = (
    "import os\n"
    "for _ in range(4):\n"
    "    if os.fork() == 0:\n"
    "        if os.fork() == 0:\n"
    "            os.setsid()\n"
    "            while True: pass\n"
    "        os._exit(0)\n"
    "for _ in range(4): os.wait()\n"
)
