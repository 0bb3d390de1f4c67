//! Live cgroup tests against the running kernel's cgroup hierarchies.
//!
//! **Requires root** (creating cgroups and moving processes into them): the
//! tests fail — deliberately, they are not skipped — with a clear message
//! when not run as root. They need `/usr/bin/python3` and `/bin/sh`.
//!
//! Written for this project's CI machine (hybrid layout, cgroup v1 in use)
//! but only use the version-independent API, so they also exercise v2 on a
//! machine that has it. Everything they create is removed (RAII guards also
//! run on panic) and every process they start is killed and reaped.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use evaler_sandbox::cgroup::{BoxCgroup, CgroupVersion, Cgroups};

const PY: &str = "/usr/bin/python3";

/// The tests share the hierarchies (and one sweeps): run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
const MIB: u64 = 1 << 20;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "cgroup_live tests must run as root (they create cgroups and move processes into them); \
         run `sudo -E cargo test -p evaler-sandbox --test cgroup_live`"
    );
    assert!(
        fs::metadata(PY).is_ok(),
        "cgroup_live tests need {PY} (Debian's python3)"
    );
}

/// Spawns `python3 -S -c <code>` directly into the box: the forked child
/// writes "0" into every join file before exec, exactly as the sandbox does.
fn spawn_in_box(b: &BoxCgroup, code: &str) -> Child {
    let fds = b.join_files().expect("join_files");
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(PY);
    cmd.args(["-S", "-c", code])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec. It only calls
    // write(2), which is async-signal-safe, on descriptors that stay open
    // until exec (they are O_CLOEXEC), and it does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &raw {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn python3 into the box");
    drop(fds);
    child
}

fn run_in_box(b: &BoxCgroup, code: &str) -> Output {
    spawn_in_box(b, code)
        .wait_with_output()
        .expect("wait for python3")
}

#[test]
fn cgroup_live_box_lifecycle() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cg = Cgroups::detect().expect("detect cgroups");
    eprintln!(
        "cgroup version {:?}, bases {:?}",
        cg.version(),
        cg.base_dirs()
    );
    cg.sweep_stale().expect("sweep_stale");

    let inst = cg.create_instance().expect("create_instance");
    let inst_paths: Vec<PathBuf> = inst.paths().to_vec();
    let b = inst.create_box(0).expect("create_box");
    let box_paths: Vec<PathBuf> = b.paths().to_vec();
    for p in inst_paths.iter().chain(&box_paths) {
        assert!(p.is_dir(), "{} not created", p.display());
    }
    b.set_limits(Some(64 * MIB), Some(10)).expect("set_limits");

    // --- CPU: a 0.3 s busy loop; joined via add_pid (sh waits on stdin
    // until it has been moved, then execs python3).
    let meter = b.begin_run().expect("begin_run");
    eprintln!("peak method: {}", meter.peak_method());
    let mut child = Command::new("/bin/sh")
        .args([
            "-c",
            "read x; exec /usr/bin/python3 -S -c \"import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\"",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    b.add_pid(child.id() as i32).expect("add_pid");
    assert_eq!(b.procs().unwrap(), vec![child.id() as i32]);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut samples = Vec::new();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        samples.push(meter.cpu_time().unwrap());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "busy loop hung"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.wait().unwrap().success());
    let cpu = meter.cpu_time().unwrap();
    eprintln!("cpu_time {cpu:?} over {} samples", samples.len());
    assert!(
        samples.windows(2).all(|w| w[0] <= w[1]),
        "cpu_time went backwards"
    );
    assert!(
        samples.len() > 3 && samples.last() > samples.first(),
        "cpu_time did not grow"
    );
    assert!(
        cpu >= Duration::from_millis(290),
        "cpu_time {cpu:?} < 0.3 s"
    );
    assert!(cpu < Duration::from_secs(3), "cpu_time {cpu:?} implausible");
    assert!(!meter.oom_killed().unwrap());

    // --- Memory peak: touch 48 MiB under a 64 MiB limit.
    let meter = b.begin_run().expect("begin_run");
    let out = run_in_box(&b, "b = bytearray(b'\\x01') * (48 << 20)");
    assert!(out.status.success(), "48 MiB run failed: {out:?}");
    let peak = meter.memory_peak_bytes().unwrap();
    eprintln!("48 MiB run: peak {} KiB", peak >> 10);
    assert!(
        (48 * MIB..=64 * MIB).contains(&peak),
        "peak {peak} not in 48..=64 MiB"
    );
    assert!(!meter.oom_killed().unwrap());

    // --- OOM: 100 MiB does not fit in 64 MiB.
    let meter = b.begin_run().expect("begin_run");
    let out = run_in_box(&b, "b = bytearray(b'\\x01') * (100 << 20)");
    eprintln!("100 MiB run: {:?}", out.status);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "not OOM-killed: {out:?}"
    );
    assert!(
        meter.oom_killed().unwrap(),
        "oom_killed() false after an OOM kill"
    );
    let oom_peak = meter.memory_peak_bytes().unwrap();
    assert!(
        oom_peak > 60 * MIB,
        "OOM run peak {oom_peak} should be near the limit"
    );
    if cg.version() == CgroupVersion::V1 {
        // v1 kills a single victim; the supervisor empties the box.
        b.kill_all().unwrap();
    }

    // --- The next run in the same box starts clean.
    let meter = b.begin_run().expect("begin_run");
    assert!(!meter.oom_killed().unwrap(), "OOM leaked into the next run");
    let out = run_in_box(&b, "b = bytearray(b'\\x01') * (8 << 20)");
    assert!(out.status.success(), "{out:?}");
    let peak = meter.memory_peak_bytes().unwrap();
    eprintln!("8 MiB run after OOM: peak {} KiB", peak >> 10);
    assert!((8 * MIB..48 * MIB).contains(&peak), "peak {peak} not fresh");
    assert!(!meter.oom_killed().unwrap());
    assert!(meter.cpu_time().unwrap() < Duration::from_millis(290));

    // --- pids.max=10: a fork loop stops at 9 children (+ itself); the
    // children sleep on, orphaned, until kill_all.
    let _meter = b.begin_run().expect("begin_run");
    let out = run_in_box(
        &b,
        "import os, time\nn = 0\ntry:\n    while n < 100:\n        if os.fork() == 0:\n            \
         os.closerange(0, 3)\n            time.sleep(60)\n            os._exit(0)\n        n += 1\n\
         except OSError as e:\n    print(n, e.errno)\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("fork loop: {:?} {stdout:?}", out.status);
    assert_eq!(
        stdout.trim(),
        format!("9 {}", libc::EAGAIN),
        "pids limit not enforced"
    );
    let left = b.procs().unwrap();
    assert_eq!(left.len(), 9, "sleeping children: {left:?}");
    b.kill_all().expect("kill_all");
    assert!(b.procs().unwrap().is_empty());
    for pid in left {
        assert!(
            !PathBuf::from(format!("/proc/{pid}")).exists()
                || fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "pid {pid} still running after kill_all"
        );
    }

    // --- kill_all on our own (unreaped) child: it leaves cgroup.procs at once.
    let _meter = b.begin_run().expect("begin_run");
    let mut child = spawn_in_box(&b, "import time\ntime.sleep(60)");
    let wait_joined = Instant::now();
    while b.procs().unwrap().is_empty() {
        assert!(
            wait_joined.elapsed() < Duration::from_secs(5),
            "child never joined"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    b.kill_all().expect("kill_all");
    assert!(b.procs().unwrap().is_empty());
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));

    // --- Drop removes everything.
    drop(b);
    for p in &box_paths {
        assert!(!p.exists(), "{} not removed", p.display());
    }
    drop(inst);
    for p in &inst_paths {
        assert!(!p.exists(), "{} not removed", p.display());
    }
}

/// Removes the hand-made stale group even if the test panics.
struct StaleGuard {
    dirs: Vec<PathBuf>,
    child: Option<Child>,
}

impl Drop for StaleGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            let _ = fs::remove_dir(d);
        }
    }
}

#[test]
fn cgroup_live_sweep_kills_and_removes_stale_groups() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cg = Cgroups::detect().expect("detect cgroups");
    // A pid above PID_MAX_LIMIT: never alive.
    let name = "evaler-999999999";
    let mut guard = StaleGuard {
        dirs: cg.base_dirs().iter().map(|b| b.join(name)).collect(),
        child: None,
    };
    for d in &guard.dirs {
        fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    let child = Command::new("/bin/sleep").arg("60").spawn().unwrap();
    let pid = child.id();
    guard.child = Some(child);
    for d in &guard.dirs {
        fs::write(d.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    let removed = cg.sweep_stale().expect("sweep_stale");
    assert!(removed >= 1, "nothing swept");
    for d in &guard.dirs {
        assert!(!d.exists(), "{} not removed", d.display());
    }
    let status = guard.child.take().unwrap().wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "stale process not killed"
    );
}
