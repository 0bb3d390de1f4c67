//! Sandbox start-up cost and measurement accuracy, beside plain fork+exec and
//! bubblewrap, in one run. Not a test: it prints figures for
//! docs/BENCHMARKS.md. Run as root:
//!
//!     cargo bench -p evaler-sandbox --bench sandbox [-- RUNS]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evaler_sandbox::{BoxFile, Limits, RunSpec, Sandbox, SandboxConfig, Verdict};

struct Stats {
    name: String,
    per_run: Vec<Duration>,
    total: Duration,
    runs: usize,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.per_run.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1e3
    }
    fn rate(&self) -> f64 {
        self.runs as f64 / self.total.as_secs_f64()
    }
}

/// Runs `f` `runs` times on each of `workers` threads; per-run latencies and
/// overall throughput.
fn measure<F>(name: &str, workers: usize, runs: usize, make: impl Fn() -> F) -> Stats
where
    F: FnMut() + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let mut f = make();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(runs);
                for _ in 0..runs {
                    let t = Instant::now();
                    f();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut per_run = Vec::new();
    for h in handles {
        per_run.extend(h.join().expect("worker"));
    }
    Stats {
        name: name.to_string(),
        total: start.elapsed(),
        runs: runs * workers,
        per_run,
    }
}

fn bwrap_args() -> Vec<String> {
    let mut a: Vec<String> = [
        "--unshare-all",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for top in ["bin", "lib", "lib64", "sbin"] {
        let p = format!("/{top}");
        if let Ok(t) = std::fs::read_link(&p) {
            a.extend(["--symlink".into(), t.display().to_string(), p]);
        }
    }
    a.extend(
        [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--chdir",
            "/tmp",
            "/bin/true",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    a
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox (run as root)");
    println!(
        "machine: {} CPUs, kernel {}, cgroup {:?}",
        num_cpus(),
        kernel(),
        sandbox.cgroup_version()
    );
    println!("runs per worker: {runs}\n");

    let mut rows = Vec::new();
    rows.push(measure(
        "fork+exec /bin/true (std::process)",
        1,
        runs,
        || {
            || {
                let st = Command::new("/bin/true")
                    .stdin(Stdio::null())
                    .status()
                    .expect("true");
                assert!(st.success());
            }
        },
    ));
    let sb = Arc::new(sandbox);
    for workers in [1, 2] {
        let sb = Arc::clone(&sb);
        rows.push(measure(
            &format!("evaler sandbox /bin/true, {workers} box(es)"),
            workers,
            runs,
            move || {
                let mut b = sb.open_box().expect("box");
                move || {
                    let o = b.run(RunSpec::new("/bin/true")).expect("run");
                    assert_eq!(o.verdict, Verdict::Ok, "{o:?}");
                }
            },
        ));
    }
    if Command::new("bwrap").arg("--version").output().is_ok() {
        for workers in [1, 2] {
            rows.push(measure(
                &format!("bwrap --unshare-all /bin/true, {workers} worker(s)"),
                workers,
                runs / 2,
                || {
                    let args = bwrap_args();
                    move || {
                        let st = Command::new("bwrap")
                            .args(&args)
                            .stdin(Stdio::null())
                            .status()
                            .expect("bwrap");
                        assert!(st.success());
                    }
                },
            ));
        }
    } else {
        println!("bwrap not installed: apt-get install bubblewrap");
    }
    let base = rows[0].pct(0.5);
    println!("| what | p50 ms | p99 ms | runs/s | p50 vs fork+exec |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.3} | {:.3} | {:.0} | {:.2}x |",
            r.name,
            r.pct(0.5),
            r.pct(0.99),
            r.rate(),
            r.pct(0.5) / base
        );
    }

    accuracy(&sb);
}

fn accuracy(sb: &Sandbox) {
    println!("\naccuracy:");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile.c");
    let dir = std::env::temp_dir().join(format!("evaler-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bin = dir.join("hostile");
    let ok = Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&bin)
        .arg(src)
        .arg("-lpthread")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cc hostile.c");
    let exe = std::fs::read(&bin).expect("binary");
    let _ = std::fs::remove_dir_all(&dir);
    let mut b = sb.open_box().expect("box");
    let spec = |args: &[&str], limits: Limits| {
        let mut s = RunSpec::new("./hostile").args(args.iter().copied());
        s.files.push(BoxFile {
            name: "hostile".into(),
            contents: exe.clone(),
            executable: true,
        });
        s.limits = limits;
        s
    };
    let lim = |cpu: f64| Limits {
        cpu_time: Some(Duration::from_secs_f64(cpu)),
        wall_time: Some(Duration::from_secs(10)),
        memory_kib: Some(512 * 1024),
        ..Limits::default()
    };
    let mut cpu = Vec::new();
    for _ in 0..5 {
        let o = b.run(spec(&["cpu", "0.5"], lim(5.0))).expect("run");
        cpu.push(o.cpu_time.as_secs_f64());
    }
    println!("- 0.5 s CPU loop (self-timed by getrusage), 5 runs: reported {cpu:.4?} s");
    let mut mem = Vec::new();
    for _ in 0..5 {
        let o = b.run(spec(&["touch", "64"], lim(5.0))).expect("run");
        mem.push(o.memory_kib as f64 / 1024.0);
    }
    println!("- 64 MiB touched, 5 runs: reported {mem:.2?} MiB");
    let mut sleep = Vec::new();
    for _ in 0..5 {
        let o = b
            .run(RunSpec::new("/bin/sleep").args(["0.1"]))
            .expect("run");
        sleep.push((
            o.cpu_time.as_secs_f64() * 1e3,
            o.wall_time.as_secs_f64() * 1e3,
        ));
    }
    println!("- sleep 0.1, 5 runs: (cpu ms, wall ms) {sleep:.2?}");
    let mut over = Vec::new();
    for _ in 0..5 {
        let o = b.run(spec(&["spin"], lim(1.0))).expect("run");
        assert_eq!(o.verdict, Verdict::TimeLimit);
        over.push((o.cpu_time.as_secs_f64() - 1.0) * 1e3);
    }
    println!("- TLE overshoot past a 1.000 s CPU limit, single thread, 5 runs: {over:.2?} ms");
    let mut over4 = Vec::new();
    for _ in 0..5 {
        let o = b.run(spec(&["spin4"], lim(1.0))).expect("run");
        over4.push((o.cpu_time.as_secs_f64() - 1.0) * 1e3);
    }
    println!("- TLE overshoot past a 1.000 s CPU limit, 4 threads, 5 runs: {over4:.2?} ms");
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}
