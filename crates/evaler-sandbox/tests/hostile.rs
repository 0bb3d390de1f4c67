//! Hostile programs against the real sandbox. Each test asserts the verdict
//! and that nothing of the run survived (no process in the box's cgroup, no
//! process with the box's uid anywhere on the host).
//!
//! These need root (namespaces, cgroups, uid switching); CI runs them as
//! root. Without root they fail with the sandbox's own one-sentence error,
//! they are never skipped.

use std::io::Read;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use evaler_sandbox::{
    BoxFile, Limits, Outcome, RunSpec, Sandbox, SandboxBox, SandboxConfig, Stdin, Verdict,
};

fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        Sandbox::new(SandboxConfig::default()).expect("sandbox starts (run the tests as root)")
    })
}

/// The C program of `tests/hostile.c`, compiled once.
fn hostile() -> &'static [u8] {
    static BIN: OnceLock<Vec<u8>> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("hostile");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile.c");
        let st = Command::new("cc")
            .args(["-O1", "-o"])
            .arg(&out)
            .arg(src)
            .arg("-lpthread")
            .status()
            .expect("cc runs");
        assert!(st.success(), "compiling hostile.c failed");
        std::fs::read(out).unwrap()
    })
}

fn open() -> SandboxBox {
    sandbox().open_box().expect("box opens")
}

fn c_spec(args: &[&str]) -> RunSpec {
    let mut spec = RunSpec::new("./hostile").args(args.iter().copied());
    spec.files.push(BoxFile {
        name: "hostile".into(),
        contents: hostile().to_vec(),
        executable: true,
    });
    spec.limits.wall_time = Some(Duration::from_secs(10));
    spec
}

fn limits(cpu: f64, mem_mib: u64) -> Limits {
    Limits {
        cpu_time: Some(Duration::from_secs_f64(cpu)),
        wall_time: Some(Duration::from_secs_f64(cpu * 3.0 + 1.0)),
        memory_kib: Some(mem_mib * 1024),
        ..Limits::default()
    }
}

/// Processes on the whole host running as this uid.
fn host_processes_of(uid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let owned = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse::<u32>().ok())
            == Some(uid);
        if owned {
            found.push(pid.to_string());
        }
    }
    found
}

fn assert_nothing_left(b: &SandboxBox) {
    assert_eq!(
        b.processes().unwrap(),
        Vec::<i32>::new(),
        "processes left in the cgroup"
    );
    assert_eq!(
        host_processes_of(b.uid()),
        Vec::<String>::new(),
        "processes left with the box's uid"
    );
    assert!(b.files().list().unwrap().is_empty(), "files left in /box");
}

fn run(b: &mut SandboxBox, spec: RunSpec) -> Outcome {
    let o = b.run(spec).expect("run carried out");
    assert_nothing_left(b);
    o
}

fn sh(script: &str) -> RunSpec {
    let mut spec = RunSpec::new("/bin/sh").args(["-c", script]);
    spec.limits.wall_time = Some(Duration::from_secs(10));
    spec
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn fork_bomb_is_contained() {
    let mut b = open();
    let mut spec = c_spec(&["forkbomb"]);
    spec.limits = Limits {
        processes: Some(32),
        ..limits(1.0, 256)
    };
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::TimeLimit, "{o:?}");
}

#[test]
fn memory_bomb_is_mle() {
    let mut b = open();
    let mut spec = c_spec(&["membomb"]);
    spec.limits = limits(5.0, 64);
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::MemoryLimit, "{o:?}");
    assert!(o.comment.contains("Memory limit exceeded"), "{}", o.comment);
    // The flag does not leak into the next run of the same box.
    let o = run(&mut b, c_spec(&["exit", "0"]));
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert!(
        o.memory_kib < 8 * 1024,
        "fresh peak expected, got {} KiB",
        o.memory_kib
    );
}

/// Page cache that a run brings in first (a compiler's files, an
/// interpreter's modules) stays charged to the box after it: the next run's
/// memory must not include it. Runs as root (the sandbox).
#[test]
fn memory_excludes_page_cache_left_by_earlier_runs() {
    use std::io::Write;
    use std::os::fd::{AsFd, OwnedFd};
    // On disk (the target dir), not tmpfs: its cache can be dropped.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("big");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..48 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
    nix::fcntl::posix_fadvise(
        f.as_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .unwrap();
    let mut b = open();
    let mut spec = sh("cat > /dev/null");
    spec.stdin = Stdin::File(OwnedFd::from(std::fs::File::open(&path).unwrap()));
    spec.limits = limits(5.0, 256);
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert!(
        o.memory_kib > 40 * 1024,
        "the file's cache was charged to the box: {} KiB",
        o.memory_kib
    );
    let mut spec = sh("true");
    spec.limits = limits(5.0, 256);
    let o = run(&mut b, spec);
    assert!(
        o.memory_kib < 8 * 1024,
        "cache of the run before counted: {} KiB",
        o.memory_kib
    );
}

#[test]
fn memory_bomb_from_threads_is_mle() {
    let mut b = open();
    let mut spec = c_spec(&["membomb-threads"]);
    spec.limits = limits(5.0, 64);
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::MemoryLimit, "{o:?}");
}

#[test]
fn cpu_loop_is_tle_and_killed_promptly() {
    let mut b = open();
    let mut spec = c_spec(&["spin"]);
    spec.limits = limits(0.5, 64);
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::TimeLimit, "{o:?}");
    assert!(o.cpu_time >= Duration::from_millis(500), "{o:?}");
    // Sanity bound only; the precise overshoot is measured by the benchmark.
    assert!(o.cpu_time < Duration::from_millis(800), "{o:?}");
    assert_eq!(o.signal, Some(libc::SIGKILL));
}

#[test]
fn sleeping_forever_hits_the_wall_limit() {
    let mut b = open();
    let mut spec = sh("sleep 1000");
    spec.limits.cpu_time = Some(Duration::from_secs(1));
    spec.limits.wall_time = Some(Duration::from_millis(300));
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::TimeLimit, "{o:?}");
    assert!(
        o.comment.starts_with("Wall time limit exceeded"),
        "{}",
        o.comment
    );
    assert!(o.cpu_time < Duration::from_millis(100));
}

#[test]
fn cpu_time_sums_threads() {
    let mut b = open();
    let mut spec = c_spec(&["spin4"]);
    spec.limits = limits(1.0, 64);
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::TimeLimit, "{o:?}");
    assert!(o.cpu_time >= Duration::from_secs(1), "{o:?}");
    // Four threads burning 0.25 s each: 1 s in all, whatever the scheduling.
    let mut spec = c_spec(&["cpu4", "0.25"]);
    spec.limits = limits(5.0, 64);
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    let t = o.cpu_time.as_secs_f64();
    assert!((1.0..1.1).contains(&t), "cpu {t}");
}

#[test]
fn stack_limit_is_applied() {
    let mut b = open();
    let mut spec = c_spec(&["recurse", "100000"]); // ~100 MiB of frames
    spec.limits = Limits {
        stack_kib: Some(1024),
        ..limits(2.0, 512)
    };
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::RuntimeError, "{o:?}");
    assert_eq!(o.signal, Some(libc::SIGSEGV), "{o:?}");

    let mut spec = c_spec(&["recurse", "100000"]);
    spec.limits = Limits {
        stack_kib: Some(256 * 1024),
        ..limits(2.0, 512)
    };
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
}

#[test]
fn output_floods_are_ole() {
    let mut b = open();
    for fd in ["1", "2"] {
        let mut spec = c_spec(&["flood", fd]);
        spec.limits = Limits {
            output_kib: Some(1024),
            ..limits(5.0, 64)
        };
        let o = run(&mut b, spec);
        assert_eq!(o.verdict, Verdict::OutputLimit, "fd {fd}: {:?}", o.comment);
        let kept = if fd == "1" { &o.stdout } else { &o.stderr };
        assert_eq!(kept.len(), 1024 * 1024);
    }
}

/// Output past the cap that fits in the pipe lets the program exit before
/// the supervisor kills it: still OLE, with its comment, and the exit status
/// it really had. Root: needs the sandbox.
#[test]
fn a_small_overflow_that_exits_first_is_still_ole() {
    let mut b = open();
    for (script, stream) in [
        ("head -c 200000 /dev/zero", "stdout"),
        ("head -c 200000 /dev/zero >&2", "stderr"),
    ] {
        let mut spec = sh(script);
        spec.limits.output_kib = Some(64);
        let o = run(&mut b, spec);
        assert_eq!(o.verdict, Verdict::OutputLimit, "{script}: {o:?}");
        assert!(
            o.comment
                .starts_with(&format!("Output limit exceeded ({stream}")),
            "{script}: {}",
            o.comment
        );
        assert!(
            o.exit_code == Some(0) || o.signal == Some(libc::SIGKILL),
            "{script}: {o:?}"
        );
    }
}

#[test]
fn filling_tmp_and_box_stops_at_their_size() {
    let mut b = open();
    for dir in ["/tmp", "/box", "/dev/shm"] {
        let o = run(
            &mut b,
            sh(&format!(
                "dd if=/dev/zero of={dir}/fill bs=1M 2>&1; echo rc=$?"
            )),
        );
        assert_eq!(o.verdict, Verdict::Ok, "{dir}: {o:?}");
        let out = text(&o.stdout);
        assert!(out.contains("No space left on device"), "{dir}: {out}");
    }
    // One huge file under a file size limit.
    let mut spec = sh("exec dd if=/dev/zero of=/box/big bs=1M count=100");
    spec.limits.file_size_kib = Some(1024);
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::OutputLimit, "{o:?}");
    assert_eq!(o.signal, Some(libc::SIGXFSZ));
}

#[test]
fn open_files_are_limited() {
    let mut b = open();
    let mut spec = c_spec(&["files"]);
    spec.limits.open_files = 100;
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert_eq!(text(&o.stdout).trim(), "97 EMFILE");
}

#[test]
fn no_network_at_all() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let mut b = open();
    let script = format!(
        "import socket\nfor addr in [('127.0.0.1', {port}), ('1.1.1.1', 53), ('::1', {port})]:\n    try:\n        socket.create_connection(addr, timeout=2); print('CONNECTED', addr)\n    except OSError as e: print('refused', e.errno)\n"
    );
    let o = run(
        &mut b,
        RunSpec::new("/usr/bin/python3").args(["-c", &script]),
    );
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert!(
        !text(&o.stdout).contains("CONNECTED"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        listener.accept().is_err(),
        "the host's listener was reached"
    );
}

#[test]
fn host_files_are_invisible() {
    let mut b = open();
    let workdir = sandbox().config().workdir.display().to_string();
    let o = run(
        &mut b,
        sh(&format!(
            "for p in /etc/shadow /root /home /var /srv {workdir} /etc/ssh /sys /run; do test -e $p && echo VISIBLE $p; done; cat /etc/passwd; echo done"
        )),
    );
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    let out = text(&o.stdout);
    assert!(!out.contains("VISIBLE"), "{out}");
    assert!(
        out.contains("evaler:x:") && out.ends_with("done\n"),
        "{out}"
    );
}

#[test]
fn writing_system_dirs_fails() {
    let mut b = open();
    let o = run(
        &mut b,
        sh("for p in /usr/x /etc/x /bin/x /x /proc/x; do touch $p 2>/dev/null && echo WROTE $p; done; echo done"),
    );
    assert_eq!(text(&o.stdout), "done\n", "{o:?}");
}

#[test]
fn kill_everything_reaches_only_the_box() {
    // A host process running with the very uid of the box survives, because
    // the box has its own PID namespace.
    let mut b = open();
    let mut victim = Command::new("sleep");
    std::os::unix::process::CommandExt::uid(&mut victim, b.uid());
    let mut victim = victim.arg("30").spawn().unwrap();
    let o = b.run(sh("kill -9 -1; echo survived")).unwrap();
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert!(
        victim.try_wait().unwrap().is_none(),
        "host process was killed"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert_nothing_left(&b);
}

#[test]
fn dangerous_syscalls_are_denied() {
    let mut b = open();
    let o = run(&mut b, c_spec(&["syscalls"]));
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    let out = text(&o.stdout);
    for line in out.lines() {
        let (call, result) = line.split_once('=').unwrap();
        let expected = match call {
            "io_uring" | "clone3" | "x32_unshare" => "ENOSYS",
            "fork" => "OK",
            _ => "EPERM",
        };
        assert_eq!(result, expected, "{call}: {out}");
    }
    assert_eq!(out.lines().count(), 19, "{out}");
}

#[test]
fn daemons_do_not_outlive_the_run() {
    let mut b = open();
    let o = run(&mut b, c_spec(&["daemon"]));
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert_eq!(text(&o.stdout), "parent done\n");
}

#[test]
fn closing_stdout_and_running_on() {
    let mut b = open();
    let o = run(
        &mut b,
        sh("echo before; exec 1>&-; sleep 0.2; echo after >&2"),
    );
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert_eq!(text(&o.stdout), "before\n");
    assert_eq!(text(&o.stderr), "after\n");
}

#[test]
fn signals_and_exit_codes() {
    let mut b = open();
    let o = run(&mut b, c_spec(&["segv"]));
    assert_eq!(
        (o.verdict, o.signal, o.status()),
        (Verdict::RuntimeError, Some(11), 139)
    );
    assert_eq!(o.comment, "Killed by signal 11 (SIGSEGV)");
    let o = run(&mut b, c_spec(&["abort"]));
    assert_eq!(
        (o.verdict, o.signal, o.status()),
        (Verdict::RuntimeError, Some(6), 134)
    );
    for code in 0..=255 {
        let o = run(&mut b, c_spec(&["exit", &code.to_string()]));
        assert_eq!(o.exit_code, Some(code), "{o:?}");
        assert_eq!(o.status(), code);
        let want = if code == 0 {
            Verdict::Ok
        } else {
            Verdict::RuntimeError
        };
        assert_eq!(o.verdict, want);
    }
}

#[test]
fn big_stdin_and_big_stdout_do_not_deadlock() {
    let mut b = open();
    let input: Vec<u8> = (0..8 << 20).map(|i: u32| b'a' + (i % 26) as u8).collect();
    let mut spec = RunSpec::new("cat");
    spec.stdin = Stdin::Bytes(input.clone());
    spec.limits.wall_time = Some(Duration::from_secs(10));
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::Ok, "{:?}", o.comment);
    assert!(o.stdout == input, "stdout differs from stdin");
}

#[test]
fn stdin_from_a_host_file() {
    let mut b = open();
    let mut f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut f, b"3 4\n").unwrap();
    std::io::Seek::rewind(&mut f).unwrap();
    let mut spec = sh("read a b; echo $((a+b))");
    spec.stdin = Stdin::File(f.into());
    let o = run(&mut b, spec);
    assert_eq!(text(&o.stdout), "7\n");
}

#[test]
fn two_boxes_do_not_see_each_other() {
    let mut a = open();
    let mut b = open();
    assert_ne!(a.uid(), b.uid());
    let t = std::thread::spawn(move || {
        let mut spec =
            sh("echo secret > /box/secret; echo $$ > /tmp/pid; sleep 1; cat /box/secret");
        spec.keep_files = false;
        let o = a.run(spec).unwrap();
        assert_nothing_left(&a);
        o
    });
    std::thread::sleep(Duration::from_millis(300));
    let o = run(
        &mut b,
        sh("ls /box; ls /tmp; ls /proc | grep -c '^[0-9]'; cat /box/secret 2>/dev/null; echo end"),
    );
    // Only this run's own shell, ls and grep are visible.
    let out = text(&o.stdout);
    assert!(!out.contains("secret") && !out.contains("pid"), "{out}");
    let visible: u32 = out.lines().next().unwrap().trim().parse().unwrap();
    assert!(visible <= 3, "{out}");
    let oa = t.join().unwrap();
    assert_eq!(text(&oa.stdout), "secret\n");
}

#[test]
fn planted_links_and_fifos_are_not_followed() {
    let mut b = open();
    let mut spec = sh("ln -s /etc/passwd link; mkfifo fifo; mkdir -p d/e/f; echo hi > d/e/f/g");
    spec.keep_files = true;
    let o = b.run(spec).unwrap();
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert!(
        b.files().read("link", 1 << 20).is_err(),
        "followed a symlink"
    );
    assert!(b.files().read("fifo", 1 << 20).is_err(), "opened a fifo");
    b.files().write("link", b"replaced", false).unwrap();
    assert_eq!(b.files().read("link", 100).unwrap().0, b"replaced");
    // The host's file was not touched.
    let mut passwd = String::new();
    std::fs::File::open("/etc/passwd")
        .unwrap()
        .read_to_string(&mut passwd)
        .unwrap();
    assert!(passwd.contains("root:"));
    b.clear().unwrap();
    assert!(b.files().list().unwrap().is_empty());
}

#[test]
fn a_very_deep_tree_is_cleaned_up() {
    let mut b = open();
    let o = b
        .run(sh(
            "i=0; while [ $i -lt 200 ]; do mkdir d; cd d; i=$((i+1)); done; echo x > f",
        ))
        .unwrap();
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert_nothing_left(&b);
    let o = run(&mut b, sh("ls -A /box | wc -l"));
    assert_eq!(text(&o.stdout).trim(), "0");
}

#[test]
fn environment_is_clean() {
    let mut b = open();
    std::env::set_var("EVALER_TEST_SECRET", "leak");
    let mut spec = sh("env | sort");
    spec.env.push(("EXTRA".into(), "1".into()));
    let o = run(&mut b, spec);
    let out = text(&o.stdout);
    assert!(!out.contains("leak"), "{out}");
    assert!(
        out.contains("EXTRA=1") && out.contains("PATH=/usr/local/bin:/usr/bin:/bin"),
        "{out}"
    );
}

#[test]
fn missing_program_is_a_sandbox_error() {
    let mut b = open();
    let o = run(&mut b, RunSpec::new("no-such-program"));
    assert_eq!(o.verdict, Verdict::SandboxError);
    assert!(o.comment.contains("No such file"), "{}", o.comment);
}

#[test]
fn accuracy_cpu_memory_sleep() {
    let mut b = open();
    // ~0.5 s of CPU as the program itself counts it.
    let mut spec = c_spec(&["cpu", "0.5"]);
    spec.limits = limits(5.0, 256);
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    let t = o.cpu_time.as_secs_f64();
    assert!((0.5..0.525).contains(&t), "cpu {t}");
    // 64 MiB touched.
    let mut spec = c_spec(&["touch", "64"]);
    spec.limits = limits(5.0, 256);
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    let mib = o.memory_kib as f64 / 1024.0;
    assert!((64.0..64.0 * 1.15).contains(&mib), "memory {mib} MiB");
    // A 100 ms sleep.
    let o = run(&mut b, sh("sleep 0.1"));
    assert!(o.cpu_time < Duration::from_millis(20), "{o:?}");
    assert!(
        o.wall_time >= Duration::from_millis(100) && o.wall_time < Duration::from_millis(400),
        "{o:?}"
    );
}

#[test]
fn binds_are_read_only_and_per_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "shared\n").unwrap();
    let file = dir.path().join("single");
    std::fs::write(&file, "one file\n").unwrap();
    let mut b = open();
    let mut spec = sh(
        "cat /opt/evaler/d/data.txt /opt/evaler/f; echo x > /opt/evaler/d/new 2>/dev/null && echo WROTE; echo x > /opt/evaler/f 2>/dev/null && echo WROTE; echo done",
    );
    spec.binds = vec![
        evaler_sandbox::Bind {
            host: dir.path().to_path_buf(),
            name: "d".into(),
        },
        evaler_sandbox::Bind {
            host: file.clone(),
            name: "f".into(),
        },
    ];
    let o = run(&mut b, spec);
    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
    assert_eq!(text(&o.stdout), "shared\none file\ndone\n", "{o:?}");
    assert!(!dir.path().join("new").exists());
    // The next run of the same box sees no trace of the binds.
    let o = run(&mut b, sh("ls /opt/evaler | wc -l"));
    assert_eq!(text(&o.stdout).trim(), "0");
}

/// When a box runs out of memory the OOM killer must take the run's
/// processes, never the box keeper (their parent, pid 1 inside). Programs
/// are started in the keeper's memory (vfork-style), so this also checks
/// that raising the program's score left the keeper's alone. Root: needs
/// the sandbox and reads other users' /proc entries.
#[test]
fn the_oom_killer_prefers_the_program_to_the_keeper() {
    let mut b = open();
    let uid = b.uid();
    let field = |pid: &str, key: &str| -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let adj = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let seen = std::thread::scope(|s| {
        let runner = s.spawn(|| run(&mut b, sh("sleep 1")));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = None;
        while seen.is_none() && std::time::Instant::now() < deadline {
            for pid in host_processes_of(uid) {
                let parent = field(&pid, "PPid:");
                if !parent.is_empty() && parent != "0" {
                    seen = Some((adj(&pid), adj(&parent)));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let o = runner.join().unwrap();
        assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
        seen
    });
    // The keeper lowers its own score where it may (CAP_SYS_RESOURCE, which
    // some container hosts withhold even from root); either way it must not
    // have taken the program's 1000.
    let caps = field("self", "CapEff:");
    let sys_resource = u64::from_str_radix(&caps, 16).unwrap() & (1 << 24) != 0;
    let keeper = if sys_resource { "-1000" } else { "0" };
    assert_eq!(
        seen,
        Some(("1000".to_string(), keeper.to_string())),
        "(program, keeper) oom_score_adj"
    );
}
