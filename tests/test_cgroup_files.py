"""cgroup backends against fake v2/v1 trees: formats, bounds, rules, errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from scheduling.cgroups import (
    Applied,
    CgroupError,
    CgroupV1,
    CgroupV2,
    DryRun,
    clean_group,
    detect,
    machine_cpus,
    open_backend,
    parse_cpu_max,
    parse_flat_keyed,
    quota_for,
    read_mounts,
)
from tests.cgroup_fakes import FakeV1, FakeV2

ME = os.getpid()


@pytest.fixture
def v2(tmp_path: Path) -> FakeV2:
    return FakeV2(tmp_path / "cg2")


@pytest.fixture
def v1(tmp_path: Path) -> FakeV1:
    return FakeV1(tmp_path / "cg1")


def make_v2(
    fake: FakeV2, group: str = "cpusched/workload", cpus: float = 1
) -> CgroupV2:
    return CgroupV2(fake.root, group, 100_000, cpus, fake)


def make_v1(
    fake: FakeV1, group: str = "cpusched/workload", cpus: float = 1
) -> CgroupV1:
    return CgroupV1(fake.cpu, group, 100_000, cpus, fake, fake.cpuacct)


# Conversions and bounds ----------------------------------------------------------


def test_a_cap_of_0_4_percent_of_one_cpu_becomes_1000_us_per_250_ms() -> None:
    applied = quota_for(0.4, cpus=1, period_us=100_000)

    assert (applied.quota_us, applied.period_us) == (1000, 250_000)
    assert applied.percent == 0.4
    assert applied.note == ""


def test_a_cap_of_0_4_percent_of_one_cpu_is_never_written_as_400_100000(
    v2: FakeV2,
) -> None:
    backend = make_v2(v2)
    backend.prepare()

    backend.write_cap(0.4)

    assert (backend.path / "cpu.max").read_text() == "1000 250000\n"
    assert ("cpusched/workload/cpu.max", "400 100000") not in v2.writes


def test_percent_means_the_whole_machine() -> None:
    assert quota_for(30, cpus=2, period_us=100_000).quota_us == 60_000
    assert quota_for(30, cpus=1, period_us=100_000).quota_us == 30_000
    assert quota_for(100, cpus=4, period_us=50_000).quota_us == 200_000


def test_a_cap_below_one_ms_per_second_is_clamped_and_reported() -> None:
    applied = quota_for(0.05, cpus=1, period_us=100_000)

    assert (applied.quota_us, applied.period_us) == (1000, 1_000_000)
    assert applied.percent == 0.1
    assert "below the smallest the kernel enforces" in applied.note


def test_a_zero_cap_is_the_smallest_legal_cap() -> None:
    applied = quota_for(0, cpus=2, period_us=100_000)

    assert (applied.quota_us, applied.period_us) == (1000, 1_000_000)
    assert applied.percent == 0.05


def test_inf_means_unlimited_and_above_100_means_100() -> None:
    assert quota_for(math.inf, 2, 100_000) == Applied(None, None, 100_000)
    assert quota_for(250, 2, 100_000).quota_us == 200_000


def test_a_negative_or_nan_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="-1"):
        quota_for(-1, 1, 100_000)
    with pytest.raises(ValueError, match="nan"):
        quota_for(math.nan, 1, 100_000)


def test_a_period_of_2_s_is_refused_when_configured(v2: FakeV2) -> None:
    with pytest.raises(CgroupError) as caught:
        open_backend("v2", "cpusched/workload", 2_000_000, root=v2.root)

    assert "cgroup.period_us 2000000 is out of range" in str(caught.value)
    assert "1000 to 1000000 us" in str(caught.value)


def test_a_period_below_1_ms_is_refused_too() -> None:
    with pytest.raises(CgroupError, match="cgroup.period_us 999 is out of range"):
        quota_for(50, 1, 999)


def test_the_reader_accepts_max_and_ignores_extra_fields() -> None:
    assert parse_cpu_max("max 100000\n", 1) == Applied(None, None, 100_000)
    assert parse_cpu_max("max", 1) == Applied(None, None, 100_000)
    assert parse_cpu_max("50000 100000 9 extra\n", 2) == Applied(25.0, 50_000, 100_000)


def test_the_reader_says_what_it_expected_for_garbage() -> None:
    with pytest.raises(CgroupError, match="Cannot parse cpu.max 'lots'"):
        parse_cpu_max("lots", 1)


def test_cpu_stat_parsing_skips_lines_it_does_not_understand() -> None:
    text = "usage_usec 42\nweird\nnr_throttled 3 extra\nname value\n"

    assert parse_flat_keyed(text) == {"usage_usec": 42, "nr_throttled": 3}


def test_machine_cpus_counts_the_online_list(tmp_path: Path) -> None:
    online = tmp_path / "online"
    online.write_text("0-3,6\n")

    assert machine_cpus(online) == 5
    assert machine_cpus(tmp_path / "missing") == os.cpu_count()


def test_the_group_must_stay_below_the_mount() -> None:
    assert clean_group(" /cpusched/workload/ ") == "cpusched/workload"
    with pytest.raises(CgroupError, match="'a/../b' is not usable"):
        clean_group("a/../b")
    with pytest.raises(CgroupError, match="'' is not usable"):
        clean_group("")


# Detection -------------------------------------------------------------------------


def write_mounts(tmp_path: Path, lines: list[str]) -> Path:
    mounts = tmp_path / "mounts"
    mounts.write_text("\n".join(lines) + "\n")
    return mounts


def test_a_hybrid_host_with_a_controllerless_cgroup2_mount_is_v1(
    tmp_path: Path,
) -> None:
    root = tmp_path / "sys"
    (root / "unified").mkdir(parents=True)
    (root / "unified" / "cgroup.controllers").write_text("\n")
    mounts = write_mounts(
        tmp_path,
        [
            f"tmpfs {root} tmpfs rw 0 0",
            f"cgroup {root}/cpu cgroup rw,relatime,cpu 0 0",
            f"cgroup {root}/cpuacct cgroup rw,relatime,cpuacct 0 0",
            f"cgroup {root}/cpuset cgroup rw,relatime,cpuset 0 0",
            f"cgroup2 {root}/unified cgroup2 rw,relatime 0 0",
        ],
    )

    assert detect(root, mounts_file=mounts) == "v1"


def test_a_cgroup2_mount_with_the_cpu_controller_is_v2(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mounts = write_mounts(tmp_path, [f"cgroup2 {root} cgroup2 rw,nsdelegate 0 0"])

    assert detect(root, mounts_file=mounts) == "v2"


def test_cpuset_and_cpuacct_alone_do_not_count_as_the_cpu_controller(
    tmp_path: Path,
) -> None:
    root = tmp_path / "sys"
    mounts = write_mounts(
        tmp_path,
        [
            f"cgroup {root}/cpuset cgroup rw,cpuset 0 0",
            f"cgroup {root}/cpuacct cgroup rw,cpuacct 0 0",
        ],
    )

    assert detect(root, mounts_file=mounts) == "none"


def test_mount_points_with_spaces_are_unescaped(tmp_path: Path) -> None:
    mounts = write_mounts(tmp_path, [r"cgroup /a\040b/cpu cgroup rw,cpu,cpuacct 0 0"])

    [mount] = read_mounts(mounts)

    assert mount.point == Path("/a b/cpu")
    assert {"cpu", "cpuacct"} <= mount.options


def test_fake_trees_are_detected_from_their_files(v2: FakeV2, v1: FakeV1) -> None:
    assert detect(v2.root) == "v2"
    assert detect(v1.root) == "v1"


def test_auto_without_any_cpu_hierarchy_is_a_dry_run_with_a_reason(
    tmp_path: Path,
) -> None:
    backend = open_backend("auto", "cpusched/workload", root=tmp_path)

    assert isinstance(backend, DryRun)
    assert backend.path == tmp_path / "cpusched/workload"
    assert backend.degraded_reason is not None
    assert "No cgroup hierarchy with the cpu controller" in backend.degraded_reason


def test_auto_prefers_v2_then_v1(v2: FakeV2, v1: FakeV1) -> None:
    assert open_backend("auto", "g", root=v2.root).kind == "v2"
    assert open_backend("auto", "g", root=v1.root).kind == "v1"
    assert open_backend("auto", "g", root=v1.root).degraded_reason is None


def test_an_unknown_backend_lists_the_allowed_ones() -> None:
    with pytest.raises(CgroupError, match="'v3': use one of auto, v2, v1, dry-run"):
        open_backend("v3", "g")


@pytest.mark.skipif(
    not Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists(),
    reason="this host has no cgroup v1 cpu hierarchy",
)
def test_this_hybrid_host_is_detected_as_v1() -> None:
    assert detect() == "v1"


# cgroup v2 -------------------------------------------------------------------------


def test_prepare_creates_the_group_and_enables_cpu_in_every_parent(
    v2: FakeV2,
) -> None:
    backend = make_v2(v2)

    notes = backend.prepare()

    assert "cpu" in (v2.root / "cgroup.subtree_control").read_text().split()
    assert "cpu" in (v2.root / "cpusched/cgroup.subtree_control").read_text().split()
    assert (backend.path / "cpu.max").read_text() == "max 100000\n"
    assert f"Created {backend.path}" in notes


def test_prepare_moves_processes_out_of_a_parent_before_enabling_cpu(
    v2: FakeV2,
) -> None:
    parent = v2.root / "cpusched"
    v2._mkdir_raw(parent)
    v2.set_procs(parent, [ME, 4242])
    backend = make_v2(v2)

    notes = backend.prepare()

    leaf = parent / "cpusched-outside"
    assert v2.procs(leaf) == sorted([ME, 4242])
    assert v2.procs(parent) == []
    assert "cpu" in (parent / "cgroup.subtree_control").read_text().split()
    assert any(f"to {leaf}" in note and "4242" in note for note in notes)


def test_the_root_group_keeps_its_processes(v2: FakeV2) -> None:
    make_v2(v2).prepare()

    assert v2.procs(v2.root) == [1]


def test_when_enabling_still_fails_the_error_names_the_pids_in_the_way(
    v2: FakeV2,
) -> None:
    parent = v2.root / "cpusched"
    v2._mkdir_raw(parent)
    v2.set_procs(parent, [4243])
    v2.unmovable.add(4243)

    with pytest.raises(CgroupError) as caught:
        make_v2(v2).prepare()

    message = str(caught.value)
    assert "processes in the way: 4243" in message
    assert "no-internal-processes rule" in message
    assert caught.value.errno == 16


def test_the_scheduler_inside_the_managed_group_moves_out(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()
    v2.move(v2.root, ME, backend.path)

    notes = backend.prepare()

    assert ME not in backend.members()
    assert any(f"PID {ME}" in note for note in notes)


def test_v2_without_the_cpu_controller_says_how_to_fix_it(tmp_path: Path) -> None:
    fake = FakeV2(tmp_path / "unified", controllers="")

    with pytest.raises(CgroupError) as caught:
        make_v2(fake).prepare()

    assert "cgroup.backend=v1" in str(caught.value)
    assert "systemd.unified_cgroup_hierarchy=1" in str(caught.value)


def test_write_cap_returns_what_the_kernel_holds(v2: FakeV2) -> None:
    backend = make_v2(v2, cpus=2)
    backend.prepare()

    applied = backend.write_cap(30)

    assert applied == Applied(30.0, 60_000, 100_000)
    assert backend.read_cap() == applied


def test_write_cap_raises_when_the_read_back_differs(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()
    v2.ignore_writes.add("cpu.max")

    with pytest.raises(CgroupError) as caught:
        backend.write_cap(20)

    assert "Wrote '20000 100000'" in str(caught.value)
    assert "the kernel reports 'max 100000'" in str(caught.value)


def test_a_reset_to_max_by_someone_else_shows_in_read_cap(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()
    backend.write_cap(20)

    (backend.path / "cpu.max").write_text("max 100000\n")

    assert backend.read_cap().percent is None
    assert backend.read_cap().unlimited is True


def test_permission_denied_says_to_run_as_root(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()
    v2.denied.add(backend.path / "cpu.max")

    with pytest.raises(CgroupError) as caught:
        backend.write_cap(20)

    assert str(caught.value).startswith(
        f"Cannot write '20000 100000' to {backend.path / 'cpu.max'}: Permission denied"
    )
    assert "as root" in str(caught.value)


def test_a_removed_group_says_how_to_get_it_back(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()
    backend.remove()

    with pytest.raises(CgroupError) as caught:
        backend.write_cap(20)

    assert "No such file or directory" in str(caught.value)
    assert "restart runscheduler to recreate it" in str(caught.value)


def test_attach_detach_and_members(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()
    v2.set_procs(v2.root, [1, 500, 501])

    backend.attach(500)
    backend.attach(501)
    backend.detach(500)

    assert backend.members() == [501]
    assert v2.procs(v2.root / "cpusched/cpusched-outside") == [500]


def test_detach_goes_to_the_parent_when_the_parent_is_the_root(v2: FakeV2) -> None:
    backend = make_v2(v2, group="workload")
    backend.prepare()
    v2.set_procs(v2.root, [1, 500])
    backend.attach(500)

    backend.detach(500)

    assert v2.procs(v2.root) == [1, 500]


def test_detaching_a_process_that_is_not_a_member_is_refused(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()

    with pytest.raises(CgroupError, match="PID 777 is not in"):
        backend.detach(777)


def test_attaching_to_a_group_with_controllers_below_it_explains_the_rule(
    v2: FakeV2,
) -> None:
    backend = make_v2(v2, group="cpusched")
    backend.prepare()
    make_v2(v2, group="cpusched/inner").prepare()
    v2.set_procs(v2.root, [1, 500])

    with pytest.raises(CgroupError, match="choose a leaf group for cgroup.group"):
        backend.attach(500)


def test_pid_1_and_kernel_threads_are_never_attached(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()

    with pytest.raises(CgroupError, match="Refusing to attach PID 1"):
        backend.attach(1)
    with pytest.raises(CgroupError, match="kernel thread"):
        backend.attach(2)


def test_usage_is_the_groups_own_cpu_stat(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()
    (backend.path / "cpu.stat").write_text("usage_usec 123456\nnr_throttled 7\n")

    assert backend.usage_usec() == 123_456
    assert backend.cpu_stat()["nr_throttled"] == 7


def test_remove_moves_members_out_and_deletes_what_prepare_made(v2: FakeV2) -> None:
    backend = make_v2(v2)
    backend.prepare()
    v2.set_procs(v2.root, [1, 500])
    backend.attach(500)

    backend.remove()

    assert not backend.path.exists()
    assert v2.procs(v2.root / "cpusched/cpusched-outside") == [500]


# cgroup v1 -------------------------------------------------------------------------


def test_v1_prepare_creates_the_group_in_both_hierarchies(v1: FakeV1) -> None:
    backend = make_v1(v1)

    backend.prepare()

    assert (v1.cpu / "cpusched/workload/cpu.cfs_quota_us").exists()
    assert (v1.root / "cpuacct/cpusched/workload/cpuacct.usage").exists()


def test_v1_writes_and_reads_quota_and_period(v1: FakeV1) -> None:
    backend = make_v1(v1, cpus=2)
    backend.prepare()

    applied = backend.write_cap(0.2)

    assert (applied.quota_us, applied.period_us) == (1000, 250_000)
    assert (backend.path / "cpu.cfs_quota_us").read_text() == "1000\n"
    assert (backend.path / "cpu.cfs_period_us").read_text() == "250000\n"
    assert backend.read_cap() == applied


def test_v1_unlimited_is_minus_one(v1: FakeV1) -> None:
    backend = make_v1(v1)
    backend.prepare()
    backend.write_cap(20)

    applied = backend.clear_cap()

    assert applied.unlimited is True
    assert (backend.path / "cpu.cfs_quota_us").read_text() == "-1\n"
    assert backend.read_cap().percent is None


def limit_parent(v1: FakeV1, quota: int, period: int) -> None:
    parent = v1.cpu / "cpusched"
    (parent / "cpu.cfs_period_us").write_text(f"{period}\n")
    (parent / "cpu.cfs_quota_us").write_text(f"{quota}\n")


def test_v1_raising_the_period_goes_period_first_so_each_step_is_legal(
    v1: FakeV1,
) -> None:
    short = CgroupV1(v1.cpu, "cpusched/workload", 10_000, 1, v1, v1.cpuacct)
    short.prepare()
    limit_parent(v1, 50_000, 100_000)
    short.write_cap(40)
    v1.writes.clear()

    long = CgroupV1(v1.cpu, "cpusched/workload", 1_000_000, 1, v1, v1.cpuacct)
    applied = long.write_cap(40)

    # Quota first would pass through 400000 us per 10 ms: 40 CPUs' worth.
    assert [name for name, _ in v1.writes] == [
        "cpu/cpusched/workload/cpu.cfs_period_us",
        "cpu/cpusched/workload/cpu.cfs_quota_us",
    ]
    assert (applied.quota_us, applied.period_us) == (400_000, 1_000_000)


def test_v1_lowering_the_period_goes_quota_first_so_each_step_is_legal(
    v1: FakeV1,
) -> None:
    long = CgroupV1(v1.cpu, "cpusched/workload", 1_000_000, 1, v1, v1.cpuacct)
    long.prepare()
    limit_parent(v1, 50_000, 100_000)
    long.write_cap(40)
    v1.writes.clear()

    short = CgroupV1(v1.cpu, "cpusched/workload", 10_000, 1, v1, v1.cpuacct)
    applied = short.write_cap(40)

    assert [name for name, _ in v1.writes] == [
        "cpu/cpusched/workload/cpu.cfs_quota_us",
        "cpu/cpusched/workload/cpu.cfs_period_us",
    ]
    assert (applied.quota_us, applied.period_us) == (4_000, 10_000)


def test_v1_child_quota_above_the_parents_is_clamped_and_reported(
    v1: FakeV1,
) -> None:
    backend = make_v1(v1, cpus=2)
    backend.prepare()
    limit_parent(v1, 20_000, 100_000)

    applied = backend.write_cap(50)

    assert applied.percent == 10.0
    assert (applied.quota_us, applied.period_us) == (20_000, 100_000)
    assert "above the 10 % a parent" in applied.note
    assert backend.parent_limit() == Applied(10.0, 20_000, 100_000)


def test_v1_prepare_notes_a_limiting_parent(v1: FakeV1) -> None:
    backend = make_v1(v1, cpus=2)
    backend.prepare()
    limit_parent(v1, 20_000, 100_000)

    notes = backend.prepare()

    assert any("caps it at 10 % of the machine" in note for note in notes)


def test_v1_usage_is_cpuacct_usage_in_microseconds(v1: FakeV1) -> None:
    backend = make_v1(v1)
    backend.prepare()
    (v1.root / "cpuacct/cpusched/workload/cpuacct.usage").write_text("1234567890\n")

    assert backend.usage_usec() == 1_234_567


def test_v1_without_cpuacct_reads_usage_from_cpu_stat(tmp_path: Path) -> None:
    fake = FakeV1(tmp_path / "cg1", with_cpuacct=False)
    backend = CgroupV1(fake.cpu, "w", 100_000, 1, fake, None)
    backend.prepare()
    (backend.path / "cpu.stat").write_text("nr_periods 1\nusage_usec 99\n")

    assert backend.usage_usec() == 99


def test_v1_with_cpu_and_cpuacct_co_mounted_uses_one_group(tmp_path: Path) -> None:
    fake = FakeV1(tmp_path / "cg1", with_cpuacct=False)
    backend = CgroupV1(fake.cpu, "w", 100_000, 1, fake, fake.cpu)
    backend.prepare()
    (backend.path / "cpuacct.usage").write_text("5000000\n")
    fake.set_procs(fake.cpu, [1, 600])

    backend.attach(600)

    assert backend.acct_path is None
    assert backend.usage_usec() == 5000
    assert [name for name, _ in fake.writes] == ["cpu/w/cgroup.procs"]


def test_v1_without_any_accounting_says_to_mount_cpuacct(tmp_path: Path) -> None:
    fake = FakeV1(tmp_path / "cg1", with_cpuacct=False)
    backend = CgroupV1(fake.cpu, "w", 100_000, 1, fake, None)
    backend.prepare()

    with pytest.raises(CgroupError, match="mount -t cgroup -o cpuacct"):
        backend.usage_usec()


def test_v1_attach_joins_the_cpu_and_cpuacct_groups(v1: FakeV1) -> None:
    backend = make_v1(v1)
    backend.prepare()
    v1.set_procs(v1.cpu, [1, 600])
    v1.set_procs(v1.root / "cpuacct", [1, 600])

    backend.attach(600)

    assert backend.members() == [600]
    assert v1.procs(v1.root / "cpuacct/cpusched/workload") == [600]

    backend.detach(600)

    assert v1.procs(v1.cpu / "cpusched") == [600]
    assert v1.procs(v1.root / "cpuacct/cpusched") == [600]


def test_v1_remove_deletes_both_groups(v1: FakeV1) -> None:
    backend = make_v1(v1)
    backend.prepare()

    backend.remove()

    assert not (v1.cpu / "cpusched").exists()
    assert not (v1.root / "cpuacct/cpusched").exists()


def test_open_backend_finds_the_v1_hierarchies_below_root(v1: FakeV1) -> None:
    backend = open_backend("v1", "cpusched/workload", root=v1.root, cpus=2)

    assert isinstance(backend, CgroupV1)
    assert backend.path == v1.cpu / "cpusched/workload"
    assert backend.acct_path == v1.root / "cpuacct/cpusched/workload"
    assert backend.cpus == 2


# Dry run ---------------------------------------------------------------------------


def test_dry_run_writes_nothing_and_remembers_the_cap(tmp_path: Path) -> None:
    backend = open_backend("dry-run", "cpusched/workload", root=tmp_path, cpus=2)

    backend.prepare()
    applied = backend.write_cap(25)

    assert applied == Applied(25.0, 50_000, 100_000)
    assert backend.read_cap() == applied
    assert backend.usage_usec() == 0
    assert list(tmp_path.iterdir()) == []


def test_dry_run_tracks_members_that_are_alive(tmp_path: Path) -> None:
    backend = open_backend("dry-run", "g", root=tmp_path)

    backend.attach(ME)

    assert backend.members() == [ME]
    with pytest.raises(CgroupError, match="no such process"):
        backend.attach(2**22 + 1)
