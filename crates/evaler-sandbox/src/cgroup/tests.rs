//! Unit tests against fake cgroupfs trees in temp dirs (v1 and v2).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::*;

fn put(p: &Path, content: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn get(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn me() -> u32 {
    std::process::id()
}

const MIB: u64 = 1 << 20;

/// This machine's hybrid layout (mountinfo copied from it).
const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// Memory path with a ':' in a name, as cgroup names may contain one.
const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/b4bf:a535
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

struct FakeV1 {
    tmp: TempDir,
    mem: PathBuf,
    pids: PathBuf,
    cpuacct: PathBuf,
}

impl FakeV1 {
    fn new(memsw: bool, oom_kill_line: bool) -> Self {
        Self::with(HYBRID_MOUNTINFO, HYBRID_CGROUP, memsw, oom_kill_line)
    }

    fn with(mountinfo: &str, cgroup: &str, memsw: bool, oom_kill_line: bool) -> Self {
        let tmp = TempDir::new().unwrap();
        let r = tmp.path();
        put(&r.join("proc/self/mountinfo"), mountinfo);
        put(&r.join("proc/self/cgroup"), cgroup);
        let cg = r.join("sys/fs/cgroup");
        for d in [
            "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
        ] {
            put(&cg.join(d).join("cgroup.procs"), "1\n");
            put(&cg.join(d).join("release_agent"), "");
        }
        put(&cg.join("unified/cgroup.controllers"), "hugetlb\n");
        put(&cg.join("unified/cgroup.subtree_control"), "");
        let mem = cg.join("memory/process_api/b4bf:a535");
        let mut files = vec![
            ("cgroup.procs", "4105\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.max_usage_in_bytes", "123456\n"),
            ("memory.usage_in_bytes", "100000\n"),
            ("memory.failcnt", "0\n"),
            ("memory.use_hierarchy", "1\n"),
            ("memory.swappiness", "60\n"),
        ];
        files.push((
            "memory.oom_control",
            if oom_kill_line {
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
            } else {
                "oom_kill_disable 0\nunder_oom 0\n"
            },
        ));
        if memsw {
            files.push(("memory.memsw.limit_in_bytes", "9223372036854771712\n"));
            files.push(("memory.memsw.max_usage_in_bytes", "123456\n"));
        }
        for (n, c) in files {
            put(&mem.join(n), c);
        }
        let pids = cg.join("pids");
        put(&pids.join("pids.max"), "max\n");
        put(&pids.join("pids.current"), "3\n");
        let cpuacct = cg.join("cpuacct");
        put(&cpuacct.join("cpuacct.usage"), "47678235041\n");
        FakeV1 {
            tmp,
            mem,
            pids,
            cpuacct,
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn detect(&self) -> Cgroups {
        Cgroups::detect_in(self.root()).unwrap()
    }
}

const V2_MOUNTINFO: &str = "\
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

struct FakeV2 {
    tmp: TempDir,
    base: PathBuf,
}

impl FakeV2 {
    fn new(controllers: &str, subtree_control: &str) -> Self {
        Self::with_cgroup(
            "0::/system.slice/evaler.service\n",
            controllers,
            subtree_control,
        )
    }

    fn with_cgroup(cgroup: &str, controllers: &str, subtree_control: &str) -> Self {
        let tmp = TempDir::new().unwrap();
        let r = tmp.path();
        put(&r.join("proc/self/mountinfo"), V2_MOUNTINFO);
        put(&r.join("proc/self/cgroup"), cgroup);
        put(
            &r.join("sys/fs/cgroup/cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        );
        let base = r.join("sys/fs/cgroup/system.slice/evaler.service");
        for (n, c) in [
            ("cgroup.controllers", controllers),
            ("cgroup.subtree_control", subtree_control),
            ("cgroup.procs", ""),
            ("cgroup.kill", ""),
            ("cgroup.events", "populated 1\nfrozen 0\n"),
            ("cgroup.type", "domain\n"),
            ("cpu.stat", "usage_usec 5\nuser_usec 3\nsystem_usec 2\n"),
            ("cpu.max", "max 100000\n"),
            ("io.max", ""),
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("memory.oom.group", "0\n"),
            ("memory.peak", "0\n"),
            ("memory.current", "0\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            ),
            ("pids.max", "max\n"),
            ("pids.current", "0\n"),
        ] {
            put(&base.join(n), c);
        }
        FakeV2 { tmp, base }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn detect(&self) -> Cgroups {
        Cgroups::detect_in(self.root()).unwrap()
    }
}

fn unsupported(root: &Path) -> String {
    match Cgroups::detect_in(root) {
        Err(CgroupError::Unsupported(msg)) => msg,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

fn assert_one_sentence(msg: &str) {
    assert!(msg.ends_with('.'), "{msg}");
    assert_eq!(
        msg.matches(". ").count(),
        0,
        "more than one sentence: {msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

// ---------------------------------------------------------------- detection

#[test]
fn detect_hybrid_v1_like_this_machine() {
    let f = FakeV1::new(true, true);
    let cg = f.detect();
    assert_eq!(cg.version(), CgroupVersion::V1);
    assert_eq!(cg.base_dirs(), vec![&*f.mem, &*f.pids, &*f.cpuacct]);
    let l = &cg.layout;
    assert_eq!((l.memory, l.pids, l.cpu), (0, 1, 2));
    assert_eq!(l.hiers[0].rel, "/process_api/b4bf:a535");
    assert_eq!(l.hiers[0].controllers, vec!["memory"]);
}

#[test]
fn detect_v1_comounted_cpu_cpuacct_and_bind_mount_root() {
    let mountinfo = "\
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
";
    let cgroup = "4:memory:/docker/abc/inner\n8:pids:/docker/abc\n2:cpu,cpuacct:/x\n";
    let f = FakeV1::with(mountinfo, cgroup, true, true);
    let cg = f.root().join("sys/fs/cgroup");
    fs::create_dir_all(cg.join("memory/inner")).unwrap();
    fs::create_dir_all(cg.join("cpu,cpuacct/x")).unwrap();
    let c = f.detect();
    assert_eq!(c.version(), CgroupVersion::V1);
    assert_eq!(
        c.base_dirs(),
        vec![
            &*cg.join("memory/inner"),
            &*cg.join("pids"),
            &*cg.join("cpu,cpuacct/x")
        ]
    );
    assert_eq!(c.layout.hiers[2].controllers, vec!["cpu", "cpuacct"]);
    assert_eq!(c.layout.hiers[0].rel, "/docker/abc/inner");
}

#[test]
fn detect_pure_v2() {
    let f = FakeV2::new("cpu io memory pids", "");
    let cg = f.detect();
    assert_eq!(cg.version(), CgroupVersion::V2);
    assert_eq!(cg.base_dirs(), vec![&*f.base]);
    assert_eq!(cg.layout.v2_enable, vec!["memory", "pids", "cpu"]);
    assert_eq!(cg.layout.hiers[0].rel, "/system.slice/evaler.service");
}

#[test]
fn detect_v2_without_cpu_controller_still_works() {
    let f = FakeV2::new("memory pids", "");
    assert_eq!(f.detect().layout.v2_enable, vec!["memory", "pids"]);
}

#[test]
fn detect_prefers_unified_when_it_has_memory_and_pids() {
    let f = FakeV1::new(true, true);
    put(
        &f.root().join("sys/fs/cgroup/unified/cgroup.controllers"),
        "memory pids hugetlb\n",
    );
    let cg = f.detect();
    assert_eq!(cg.version(), CgroupVersion::V2);
    assert_eq!(
        cg.base_dirs(),
        vec![&*f.root().join("sys/fs/cgroup/unified")]
    );
    assert_eq!(cg.layout.v2_enable, vec!["memory", "pids"]);
}

#[test]
fn detect_v2_treats_own_self_leaf_as_parent() {
    let f = FakeV2::with_cgroup(
        &format!("0::/system.slice/evaler.service/evaler-{}.self\n", me()),
        "cpu memory pids",
        "",
    );
    fs::create_dir_all(f.base.join(format!("evaler-{}.self", me()))).unwrap();
    let cg = f.detect();
    assert_eq!(cg.base_dirs(), vec![&*f.base]);
    assert_eq!(cg.layout.hiers[0].rel, "/system.slice/evaler.service");
}

#[test]
fn detect_v2_missing_controllers_is_a_clear_error() {
    let f = FakeV2::new("cpu io", "");
    let msg = unsupported(f.root());
    assert_one_sentence(&msg);
    assert!(msg.contains("memory and pids controllers"), "{msg}");
    assert!(msg.contains("/system.slice/evaler.service"), "{msg}");
    assert!(
        msg.contains("cgroup v1 has no mounted memory, pids, cpuacct"),
        "{msg}"
    );
}

#[test]
fn detect_nothing_is_a_clear_error() {
    let tmp = TempDir::new().unwrap();
    put(
        &tmp.path().join("proc/self/mountinfo"),
        "25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n",
    );
    put(&tmp.path().join("proc/self/cgroup"), "");
    let msg = unsupported(tmp.path());
    assert_one_sentence(&msg);
    assert!(msg.contains("no cgroup v2 entry"), "{msg}");
    assert!(msg.contains("memory, pids, cpuacct hierarchies"), "{msg}");
}

#[test]
fn detect_v1_missing_pids_is_a_clear_error() {
    let mountinfo: String = HYBRID_MOUNTINFO
        .lines()
        .filter(|l| !l.contains("rw,pids"))
        .map(|l| format!("{l}\n"))
        .collect();
    let f = FakeV1::with(&mountinfo, HYBRID_CGROUP, true, true);
    let msg = unsupported(f.root());
    assert_one_sentence(&msg);
    assert!(msg.contains("hugetlb"), "{msg}");
    assert!(msg.contains("no mounted pids hierarchy"), "{msg}");
}

#[test]
fn detect_reports_unreadable_proc_files_with_path() {
    let tmp = TempDir::new().unwrap();
    let err = Cgroups::detect_in(tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("read"), "{msg}");
    assert!(msg.contains("proc/self/mountinfo"), "{msg}");
    assert!(err.is_not_found());
}

#[test]
fn instance_names() {
    assert_eq!(parse_instance_name("evaler-12"), Some(12));
    assert_eq!(parse_instance_name("evaler-12.self"), Some(12));
    assert_eq!(parse_instance_name("evaler-"), None);
    assert_eq!(parse_instance_name("evaler-1x"), None);
    assert_eq!(parse_instance_name("evaler-+1"), None);
    assert_eq!(parse_instance_name("box-1"), None);
}

// ------------------------------------------------------------------- v1

#[test]
fn v1_instance_box_limits_and_meter() {
    let f = FakeV1::new(true, true);
    let cg = f.detect();
    let name = format!("evaler-{}", me());
    let inst = cg.create_instance().unwrap();
    assert_eq!(inst.version(), CgroupVersion::V1);
    for base in [&f.mem, &f.pids, &f.cpuacct] {
        assert!(base.join(&name).is_dir());
    }
    let b = inst.create_box(3).unwrap();
    let mem = f.mem.join(&name).join("box-3");
    let pids = f.pids.join(&name).join("box-3");
    let cpuacct = f.cpuacct.join(&name).join("box-3");
    assert_eq!(b.paths(), &[mem.clone(), pids.clone(), cpuacct.clone()]);

    put(&mem.join("memory.swappiness"), "60\n");
    b.set_limits(Some(64 * MIB), Some(10)).unwrap();
    assert_eq!(get(&mem.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(get(&mem.join("memory.memsw.limit_in_bytes")), "67108864");
    assert_eq!(get(&pids.join("pids.max")), "10");
    assert_eq!(
        get(&mem.join("memory.swappiness")),
        "60",
        "memsw present: untouched"
    );
    b.set_limits(None, None).unwrap();
    assert_eq!(get(&mem.join("memory.limit_in_bytes")), "-1");
    assert_eq!(get(&mem.join("memory.memsw.limit_in_bytes")), "-1");
    assert_eq!(get(&pids.join("pids.max")), "max");

    // begin_run resets the peaks and takes baselines.
    put(&mem.join("memory.max_usage_in_bytes"), "5555\n");
    put(&mem.join("memory.memsw.max_usage_in_bytes"), "6666\n");
    put(&cpuacct.join("cpuacct.usage"), "1000000\n");
    put(
        &mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    let m = b.begin_run().unwrap();
    assert_eq!(get(&mem.join("memory.max_usage_in_bytes")), "0");
    assert_eq!(get(&mem.join("memory.memsw.max_usage_in_bytes")), "0");
    assert_eq!(m.cpu_time().unwrap(), Duration::ZERO);
    assert!(!m.oom_killed().unwrap());

    put(&cpuacct.join("cpuacct.usage"), "251000000\n");
    assert_eq!(m.cpu_time().unwrap(), Duration::from_millis(250));
    put(
        &mem.join("memory.max_usage_in_bytes"),
        &format!("{}\n", 48 * MIB),
    );
    put(
        &mem.join("memory.memsw.max_usage_in_bytes"),
        &format!("{}\n", 50 * MIB),
    );
    assert_eq!(m.memory_peak_bytes().unwrap(), 50 * MIB);
    assert_eq!(m.peak_method(), "v1 memory.memsw.max_usage_in_bytes");
    put(
        &mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 1\noom_kill 3\n",
    );
    assert!(m.oom_killed().unwrap());
    assert_eq!(m.oom_events().unwrap(), 1);

    // A second run in the same box starts clean.
    let m2 = b.begin_run().unwrap();
    assert!(!m2.oom_killed().unwrap());
    assert_eq!(m2.memory_peak_bytes().unwrap(), 0);
    assert_eq!(m2.cpu_time().unwrap(), Duration::ZERO);
    assert!(
        m.oom_killed().unwrap(),
        "the old meter keeps its own baseline"
    );

    let fds = b.join_files().unwrap();
    assert_eq!(fds.len(), 3);
    for fd in &fds {
        // SAFETY: fcntl(F_GETFD) on an fd we own; no memory involved.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
    assert!(b.dir_fd().unwrap().is_none());

    // procs() is the union over the hierarchies. Pids above PID_MAX_LIMIT
    // can never exist, so nothing real is ever signalled.
    put(&mem.join("cgroup.procs"), "999999991\n999999992\n");
    put(&pids.join("cgroup.procs"), "999999992\n999999993\n");
    assert_eq!(b.procs().unwrap(), vec![999999991, 999999992, 999999993]);
    put(&mem.join("cgroup.procs"), "");
    put(&pids.join("cgroup.procs"), "");
    b.kill_all().unwrap();
    assert!(b.procs().unwrap().is_empty());

    b.add_pid(4242).unwrap();
    for d in [&mem, &pids, &cpuacct] {
        assert_eq!(get(&d.join("cgroup.procs")), "4242");
        put(&d.join("cgroup.procs"), "");
    }

    drop(b);
    assert!(!mem.exists() && !pids.exists() && !cpuacct.exists());
    assert!(f.mem.join(&name).is_dir(), "instance outlives its boxes");
    drop(inst);
    for base in [&f.mem, &f.pids, &f.cpuacct] {
        assert!(!base.join(&name).exists());
        assert!(base.is_dir());
    }
}

#[test]
fn v1_without_swap_accounting_or_oom_kill_counter() {
    let f = FakeV1::new(false, false);
    let cg = f.detect();
    let inst = cg.create_instance().unwrap();
    let b = inst.create_box(0).unwrap();
    let mem = b.paths()[0].clone();
    b.set_limits(Some(32 * MIB), None).unwrap();
    assert_eq!(get(&mem.join("memory.limit_in_bytes")), "33554432");
    assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
    assert_eq!(get(&mem.join("memory.swappiness")), "0");

    put(
        &mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\n",
    );
    put(&mem.join("memory.failcnt"), "7\n");
    let m = b.begin_run().unwrap();
    assert_eq!(m.peak_method(), "v1 memory.max_usage_in_bytes");
    put(&mem.join("memory.max_usage_in_bytes"), "4096\n");
    assert_eq!(m.memory_peak_bytes().unwrap(), 4096);
    assert!(!m.oom_killed().unwrap());
    put(&mem.join("memory.failcnt"), "9\n");
    assert!(m.oom_killed().unwrap());
    assert_eq!(m.oom_events().unwrap(), 2);
}

/// A run's memory is the box's peak less the page cache an earlier run
/// brought in first (a compiler's files), which stays charged to the box:
/// its usage at `begin_run` above the box's floor (the keeper alone). After
/// a limit hit (the kernel may have reclaimed that cache for the run) the
/// whole peak counts.
#[test]
fn memory_excludes_what_earlier_runs_left_in_the_box() {
    let (v1, v2) = (FakeV1::new(true, true), FakeV2::new("cpu memory pids", ""));
    let cases = [
        (
            v1.detect(),
            ["memory.usage_in_bytes", "memory.max_usage_in_bytes"],
            ("memory.failcnt", "3\n"),
        ),
        (
            v2.detect(),
            ["memory.current", "memory.peak"],
            (
                "memory.events",
                "low 0\nhigh 0\nmax 1\noom 0\noom_kill 0\noom_group_kill 0\n",
            ),
        ),
    ];
    for (cg, [usage, peak], (hits, hit)) in cases {
        let inst = cg.create_instance().unwrap();
        let b = inst.create_box(0).unwrap();
        let dir = b.paths()[0].clone();
        let set = |name: &str, v: u64| put(&dir.join(name), &format!("{v}\n"));
        // The keeper alone: 1 MiB.
        set(usage, MIB);
        let m = b.begin_run().unwrap();
        set(peak, 3 * MIB);
        assert_eq!(m.memory_peak_bytes().unwrap(), 3 * MIB, "{peak}");
        // That run left 50 MiB of page cache charged to the box.
        set(usage, 51 * MIB);
        let m = b.begin_run().unwrap();
        set(peak, 53 * MIB);
        assert_eq!(m.memory_peak_bytes().unwrap(), 3 * MIB, "{peak}");
        // This one reached the limit: all of the peak.
        put(&dir.join(hits), hit);
        set(peak, 64 * MIB);
        assert_eq!(m.memory_peak_bytes().unwrap(), 64 * MIB, "{peak}");
    }
}

#[test]
fn v1_errors_name_the_operation_and_path() {
    let f = FakeV1::new(true, true);
    let cg = f.detect();
    let inst = cg.create_instance().unwrap();
    let b = inst.create_box(1).unwrap();
    fs::remove_file(b.paths()[1].join("pids.max")).unwrap();
    let err = b.set_limits(Some(MIB), Some(5)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("write \"5\" to"), "{msg}");
    assert!(msg.contains("box-1/pids.max"), "{msg}");
    assert!(err.is_not_found());
}

#[test]
fn one_live_instance_and_box_index_at_a_time() {
    let f = FakeV1::new(true, true);
    let cg = f.detect();
    let inst = cg.create_instance().unwrap();
    assert!(matches!(
        cg.create_instance(),
        Err(CgroupError::Conflict { .. })
    ));
    let b = inst.create_box(5).unwrap();
    let err = inst.create_box(5).unwrap_err();
    assert!(matches!(err, CgroupError::Conflict { .. }), "{err}");
    assert!(
        b.paths()[0].is_dir(),
        "failed duplicate must not remove the live box"
    );
    drop(b);
    let _b = inst.create_box(5).unwrap();
    drop(_b);
    drop(inst);
    let _again = cg.create_instance().unwrap();
}

#[test]
fn leftover_group_with_our_pid_is_replaced() {
    let f = FakeV1::new(true, true);
    let name = format!("evaler-{}", me());
    let stale_box = f.mem.join(&name).join("box-7");
    put(&stale_box.join("cgroup.procs"), "");
    put(&stale_box.join("memory.limit_in_bytes"), "1\n");
    put(&f.mem.join(&name).join("cgroup.procs"), "");
    let cg = f.detect();
    let inst = cg.create_instance().unwrap();
    assert!(f.mem.join(&name).is_dir());
    assert!(!stale_box.exists());
    drop(inst);
    assert!(!f.mem.join(&name).exists());
}

#[test]
fn instance_drop_removes_leftover_boxes() {
    let f = FakeV1::new(true, true);
    let cg = f.detect();
    let inst = cg.create_instance().unwrap();
    // A box directory whose BoxCgroup could not remove it (e.g. EBUSY).
    let leftover = inst.paths()[0].join("box-9");
    put(&leftover.join("cgroup.procs"), "");
    put(&leftover.join("memory.limit_in_bytes"), "1\n");
    let b = inst.create_box(2).unwrap();
    let path = b.paths()[0].clone();
    drop(inst);
    assert!(path.is_dir(), "a live box keeps the instance alive");
    drop(b);
    assert!(!path.exists());
    assert!(!leftover.exists());
    assert!(!path.parent().unwrap().exists());
}

#[test]
fn sweep_removes_only_dead_instances() {
    let f = FakeV1::new(true, true);
    let dead = "evaler-999999999";
    let dead_leaf = "evaler-999999998.self";
    for base in [&f.mem, &f.pids, &f.cpuacct] {
        put(&base.join(dead).join("cgroup.procs"), "");
        put(&base.join(dead).join("box-1/cgroup.procs"), "");
        put(&base.join(dead).join("box-1/memory.limit_in_bytes"), "1\n");
    }
    put(&f.mem.join(dead_leaf).join("cgroup.procs"), "");
    let alive = f.mem.join("evaler-1"); // init is always alive
    let ours = f.mem.join(format!("evaler-{}", me()));
    let other = f.mem.join("not-evaler");
    for d in [&alive, &ours, &other] {
        fs::create_dir_all(d).unwrap();
    }
    let cg = f.detect();
    assert_eq!(cg.sweep_stale().unwrap(), 2);
    for base in [&f.mem, &f.pids, &f.cpuacct] {
        assert!(!base.join(dead).exists());
    }
    assert!(!f.mem.join(dead_leaf).exists());
    assert!(alive.is_dir() && ours.is_dir() && other.is_dir());
    assert_eq!(cg.sweep_stale().unwrap(), 0);
}

// ------------------------------------------------------------------- v2

#[test]
fn v2_instance_box_limits_and_meter() {
    let f = FakeV2::new("cpu io memory pids", "");
    let cg = f.detect();
    let name = format!("evaler-{}", me());
    let inst = cg.create_instance().unwrap();
    assert_eq!(inst.version(), CgroupVersion::V2);
    let idir = f.base.join(&name);
    assert_eq!(
        get(&f.base.join("cgroup.subtree_control")),
        "+memory +pids +cpu"
    );
    assert_eq!(
        get(&idir.join("cgroup.subtree_control")),
        "+memory +pids +cpu"
    );
    assert_eq!(inst.paths(), std::slice::from_ref(&idir));

    let b = inst.create_box(0).unwrap();
    let dir = idir.join("box-0");
    assert_eq!(b.paths(), std::slice::from_ref(&dir));
    assert_eq!(get(&dir.join("cgroup.controllers")), "memory pids cpu");
    assert_eq!(get(&dir.join("memory.oom.group")), "1");
    assert!(!dir.join("io.max").exists(), "io was not enabled");

    b.set_limits(Some(64 * MIB), Some(10)).unwrap();
    assert_eq!(get(&dir.join("memory.max")), "67108864");
    assert_eq!(get(&dir.join("memory.swap.max")), "0");
    assert_eq!(get(&dir.join("pids.max")), "10");
    b.set_limits(None, None).unwrap();
    assert_eq!(get(&dir.join("memory.max")), "max");
    assert_eq!(get(&dir.join("memory.swap.max")), "max");
    assert_eq!(get(&dir.join("pids.max")), "max");

    put(
        &dir.join("cpu.stat"),
        "usage_usec 100\nuser_usec 60\nsystem_usec 40\n",
    );
    put(
        &dir.join("memory.events"),
        "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
    );
    let m = b.begin_run().unwrap();
    assert_eq!(
        get(&dir.join("memory.peak")),
        "reset",
        "per-fd reset written"
    );
    assert_eq!(m.peak_method(), "v2 memory.peak (per-fd reset)");
    assert_eq!(m.cpu_time().unwrap(), Duration::ZERO);
    assert!(!m.oom_killed().unwrap());

    put(
        &dir.join("cpu.stat"),
        "usage_usec 2100\nuser_usec 60\nsystem_usec 40\n",
    );
    assert_eq!(m.cpu_time().unwrap(), Duration::from_millis(2));
    put(&dir.join("memory.peak"), "7777\n");
    assert_eq!(m.memory_peak_bytes().unwrap(), 7777);
    put(
        &dir.join("memory.events"),
        "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 1\n",
    );
    assert!(m.oom_killed().unwrap());

    let m2 = b.begin_run().unwrap();
    assert!(!m2.oom_killed().unwrap());
    assert_eq!(m2.cpu_time().unwrap(), Duration::ZERO);

    assert_eq!(b.join_files().unwrap().len(), 1);
    assert!(b.dir_fd().unwrap().is_some());

    b.kill_all().unwrap();
    assert_eq!(get(&dir.join("cgroup.kill")), "1");

    drop(b);
    assert!(!dir.exists());
    drop(inst);
    assert!(!idir.exists());
    assert!(f.base.is_dir());
}

#[test]
fn v2_base_already_delegating_only_adds_missing() {
    let f = FakeV2::new("cpu memory pids", "memory pids");
    let cg = f.detect();
    let inst = cg.create_instance().unwrap();
    assert_eq!(get(&f.base.join("cgroup.subtree_control")), "+cpu");
    drop(inst);

    let f = FakeV2::new("cpu memory pids", "cpu memory pids");
    put(&f.base.join("cgroup.subtree_control"), "cpu memory pids\n");
    let inst = f.detect().create_instance().unwrap();
    assert_eq!(
        get(&f.base.join("cgroup.subtree_control")),
        "cpu memory pids",
        "nothing written when everything is delegated"
    );
    drop(inst);
}

#[test]
fn v2_peak_fallbacks() {
    // No memory.peak at all (Linux < 5.19): sample memory.current.
    let f = FakeV2::new("memory pids", "");
    fs::remove_file(f.base.join("memory.peak")).unwrap();
    let cg = f.detect();
    let inst = cg.create_instance().unwrap();
    let b = inst.create_box(0).unwrap();
    let dir = b.paths()[0].clone();
    let m = b.begin_run().unwrap();
    assert_eq!(m.peak_method(), "v2 memory.current (sampled)");
    put(&dir.join("memory.current"), "100\n");
    assert_eq!(m.memory_peak_bytes().unwrap(), 100);
    put(&dir.join("memory.current"), "50\n");
    assert_eq!(m.memory_peak_bytes().unwrap(), 100);
    put(&dir.join("memory.current"), "150\n");
    assert_eq!(m.memory_peak_bytes().unwrap(), 150);
    drop((m, b, inst));

    // memory.peak exists but cannot be reset (Linux < 6.12; a write to
    // /dev/full fails like the kernel's EINVAL would): a fresh box uses the
    // lifetime peak, a reused one samples.
    let f = FakeV2::new("memory pids", "");
    let cg = f.detect();
    let inst = cg.create_instance().unwrap();
    let b = inst.create_box(1).unwrap();
    let peak = b.paths()[0].join("memory.peak");
    fs::remove_file(&peak).unwrap();
    std::os::unix::fs::symlink("/dev/full", &peak).unwrap();
    assert_eq!(
        b.begin_run().unwrap().peak_method(),
        "v2 memory.peak (fresh box)"
    );
    assert_eq!(
        b.begin_run().unwrap().peak_method(),
        "v2 memory.current (sampled)"
    );
}

#[test]
fn v2_kill_all_without_cgroup_kill_file() {
    let f = FakeV2::new("memory pids", "");
    fs::remove_file(f.base.join("cgroup.kill")).unwrap();
    let cg = f.detect();
    let inst = cg.create_instance().unwrap();
    let b = inst.create_box(0).unwrap();
    assert!(!b.paths()[0].join("cgroup.kill").exists());
    b.kill_all().unwrap();
    assert!(!b.paths()[0].join("cgroup.kill").exists());
}

#[test]
fn v2_sweep_removes_dead_instances_and_leaves() {
    let f = FakeV2::new("memory pids", "memory pids");
    for d in [
        "evaler-999999999",
        "evaler-999999999/box-0",
        "evaler-999999997.self",
    ] {
        for (n, c) in [("cgroup.procs", ""), ("cgroup.kill", "")] {
            put(&f.base.join(d).join(n), c);
        }
    }
    let cg = f.detect();
    assert_eq!(cg.sweep_stale().unwrap(), 2);
    assert!(!f.base.join("evaler-999999999").exists());
    assert!(!f.base.join("evaler-999999997.self").exists());
}
