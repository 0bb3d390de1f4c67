//! The session client library against real kernels: state, timeouts,
//! interrupts, KILL latency, crash detection and restart, health checks,
//! cleanup on drop, and many sessions at once.
//!
//! Needs root (the sandbox) and the evaler binary: `$EVALER_BIN`, or
//! `target/<profile>/evaler` next to this test (built by `cargo test
//! --workspace`, or `cargo build -p evaler`). Missing either is a failure
//! with a message, never a skip.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use evaler_client::session::{Session, SessionError, SessionOptions, SessionStatus};
use evaler_proto::RunStatus;

fn evaler_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("EVALER_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/evaler
    let candidate = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("evaler"))
        .unwrap();
    assert!(
        candidate.is_file(),
        "the evaler binary is needed at {} (run `cargo build -p evaler` first, or set EVALER_BIN)",
        candidate.display()
    );
    candidate
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("");
    assert_eq!(
        uid, "0",
        "these tests need root (evaler's sandbox does), as CI has"
    );
}

fn opts() -> SessionOptions {
    require_root();
    SessionOptions {
        evaler: Some(evaler_bin()),
        ..SessionOptions::default()
    }
}

/// `pid` and its descendants, with start times (to tell a reused pid).
fn tree(pid: u32) -> HashSet<(u32, String)> {
    let mut all = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
        let ppid: u32 = f.get(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        all.push((p, ppid, f.get(19).cloned().unwrap_or_default()));
    }
    let mut out = HashSet::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for (c, pp, st) in &all {
            if *c == p {
                out.insert((*c, st.clone()));
            }
            if *pp == p {
                todo.push(*c);
            }
        }
    }
    out
}

fn alive(procs: &HashSet<(u32, String)>) -> Vec<u32> {
    procs
        .iter()
        .filter(|(p, st)| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_string();
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    (f.first() != Some(&"Z")).then(|| f.get(19).map(|x| x.to_string()))?
                })
                .is_some_and(|s| s == *st)
        })
        .map(|(p, _)| *p)
        .collect()
}

async fn assert_gone(procs: &HashSet<(u32, String)>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = alive(procs);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_values_and_status() {
    let s = Session::start("python", opts()).await.expect("start");
    assert_eq!(s.status(), SessionStatus::Idle);
    // The kernel leads a process group of its own: a Ctrl-C at the host's
    // terminal (SIGINT to the host's group) does not reach it.
    let pgrp = |pid: u32| -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let (_, rest) = stat.rsplit_once(')').unwrap();
        rest.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let kernel = s.kernel_pid().unwrap();
    assert_eq!(pgrp(kernel), kernel);
    assert_ne!(pgrp(kernel), pgrp(std::process::id()));
    let mut watch = s.subscribe();
    let r = s.run("x = 20").await.unwrap();
    assert_eq!(r.status, Some(RunStatus::Ok));
    let r = s.run("print('hi'); x + 22").await.unwrap();
    assert_eq!(r.stdout, "hi\n");
    assert_eq!(r.value.as_deref(), Some("42"));
    assert!(s.ping().await.unwrap() < Duration::from_secs(1));
    // Concurrent runs are answered in order.
    let (a, b) = tokio::join!(s.run("import time; time.sleep(0.2); 'a'"), s.run("'b'"));
    assert_eq!(a.unwrap().value.as_deref(), Some("'a'"));
    assert_eq!(b.unwrap().value.as_deref(), Some("'b'"));
    let _ = watch.borrow_and_update();
    s.kill().await.unwrap();
    assert!(s.status().is_dead());
    assert!(matches!(s.run("1").await, Err(SessionError::Dead(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_is_fast_even_in_an_uninterruptible_cell() {
    let s = Session::start("python", opts()).await.unwrap();
    let procs = tree(s.kernel_pid().unwrap());
    let run =
        s.run("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass");
    tokio::pin!(run);
    assert!(tokio::time::timeout(Duration::from_millis(200), &mut run)
        .await
        .is_err());
    let procs: HashSet<_> = procs
        .union(&tree(s.kernel_pid().unwrap()))
        .cloned()
        .collect();
    let t = Instant::now();
    s.kill().await.unwrap();
    let r = run.await;
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert!(matches!(r, Err(SessionError::Dead(_))), "{r:?}");
    assert_gone(&procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_interrupts_and_blocked_reads() {
    let s = Session::start("python", opts()).await.unwrap();
    s.run("state = 'kept'").await.unwrap();
    for code in [
        "import time\ntime.sleep(30)",
        "import os\nr, w = os.pipe()\nos.read(r, 1)",
        "while True: pass",
    ] {
        let t = Instant::now();
        let r = s
            .run_with_timeout(code, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(r.status, Some(RunStatus::Timeout), "{code}: {r:?}");
        // Stopped within 100 ms of the deadline (else Crashed); the RESULT
        // itself may come later on a loaded machine, as the kernel allows
        // once the server has said STOPPED (the 2 s below).
        assert!(
            t.elapsed() < Duration::from_millis(2300),
            "{code}: {:?}",
            t.elapsed()
        );
    }
    // INTERRUPT while a cell sleeps.
    let run = s.run("import time\ntime.sleep(30)");
    tokio::pin!(run);
    assert!(tokio::time::timeout(Duration::from_millis(150), &mut run)
        .await
        .is_err());
    s.interrupt().await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(2500), run)
        .await
        .expect("interrupt took effect")
        .unwrap();
    assert_eq!(r.status, Some(RunStatus::Interrupted));
    assert_eq!(
        s.run("state").await.unwrap().value.as_deref(),
        Some("'kept'")
    );
    // A cell that ignores SIGINT: the session ends 100 ms after the deadline.
    let t = Instant::now();
    let r = s
        .run_with_timeout(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    assert_eq!(r.status, Some(RunStatus::Crashed));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(s.status().is_dead());
}

/// `SessionOptions::cell_timeout` bounds every `run` without a timeout of
/// its own. Runs as root (the sandbox).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cell_timeout_applies_to_every_run() {
    let s = Session::start(
        "python",
        SessionOptions {
            cell_timeout: Some(Duration::from_millis(300)),
            ..opts()
        },
    )
    .await
    .unwrap();
    s.run("x = 1").await.unwrap();
    let t = Instant::now();
    let r = s.run("import time\ntime.sleep(30)").await.unwrap();
    assert_eq!(r.status, Some(RunStatus::Timeout), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(s.run("x").await.unwrap().value.as_deref(), Some("1"));
    // An explicit timeout still wins.
    let r = s
        .run_with_timeout("time.sleep(0.5); 2", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.value.as_deref(), Some("2"), "{r:?}");
    s.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_is_reported_and_restart_brings_a_fresh_session() {
    let mut s = Session::start("bash", opts()).await.unwrap();
    let mut watch = s.subscribe();
    s.run("x=1").await.unwrap();
    let r = s.run("kill -9 $$").await;
    match r {
        Err(SessionError::Dead(why)) => assert!(why.contains("signal 9"), "{why}"),
        other => panic!("expected Dead, got {other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(2), watch.wait_for(|s| s.is_dead()))
        .await
        .unwrap()
        .unwrap();
    let old = s.kernel_pid().unwrap();
    s.restart().await.unwrap();
    assert_ne!(s.kernel_pid().unwrap(), old);
    assert_eq!(s.status(), SessionStatus::Idle);
    let r = s.run("echo \"[$x]\"").await.unwrap();
    assert_eq!(r.stdout, "[]\n");
    s.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_notice_a_dead_kernel() {
    let o = SessionOptions {
        ping_interval: Some(Duration::from_millis(100)),
        ping_timeout: Duration::from_millis(500),
        ..opts()
    };
    let s = Session::start("python", o).await.unwrap();
    let mut watch = s.subscribe();
    let pid = s.kernel_pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), watch.wait_for(|s| s.is_dead()))
        .await
        .expect("the session was marked dead")
        .unwrap();
    assert!(matches!(s.ping().await, Err(SessionError::Dead(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_session_leaves_no_process() {
    let s = Session::start("python", opts()).await.unwrap();
    s.run("import subprocess; p = subprocess.Popen(['sleep', '100'])")
        .await
        .unwrap();
    let kernel = s.kernel_pid().unwrap();
    let procs = tree(kernel);
    assert!(
        procs.len() >= 4,
        "kernel, sandbox and server expected: {procs:?}"
    );
    // The kernel's cgroups (`evaler-PID`, under evaler's own cgroup in each
    // hierarchy) go too: the kernel is told to stop, not killed mid-cleanup.
    let cgroups = || {
        let out = std::process::Command::new("find")
            .args(["/sys/fs/cgroup", "-maxdepth", "4", "-type", "d"])
            .args(["-name", &format!("evaler-{kernel}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(!cgroups().is_empty(), "the kernel's cgroups are found");
    drop(s);
    assert_gone(&procs).await;
    assert_eq!(cgroups(), "", "cgroups left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_kill_and_start_errors() {
    let s = Session::start("ruby", opts()).await.unwrap();
    let r = s.run_and_kill("puts 'bye'").await.unwrap();
    assert_eq!(r.stdout, "bye\n");
    assert!(s.status().is_dead());
    let e = Session::start("cobol", opts()).await.unwrap_err();
    match e {
        SessionError::Start(msg) => assert!(msg.contains("unknown session language"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sessions_in_parallel() {
    let o = opts();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let o = o.clone();
        let lang = if i % 2 == 0 { "python" } else { "bash" };
        tasks.push(tokio::spawn(async move {
            let s = Session::start(lang, o).await.expect("start");
            let code = if lang == "python" {
                format!("n = {i}\nprint(n * 2)")
            } else {
                format!("n={i}; echo $((n * 2))")
            };
            let r = s.run(&code).await.unwrap();
            assert_eq!(r.stdout, format!("{}\n", i * 2), "{lang} {i}: {r:?}");
            s.kill().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
