//! Judge throughput and latency, against the bare sandbox.
//!
//! `cargo bench -p evaler-server --bench judge` (as root). In one run:
//!
//! 1. the bare sandbox: `SandboxBox::run` of a C++ a+b program in a loop,
//!    writing the same files into the box as the judge does, on 1 and on 2
//!    threads (one box each);
//! 2. the same program through the whole protocol: an in-process judge on
//!    127.0.0.1, a raw NDJSON client pipelining N `Test`s (N = 1000, or
//!    `EVALER_BENCH_N`), with 1 and 2 boxes;
//! 3. `Test`→`TResponse` latency one test at a time (p50/p99), and the
//!    sandbox's own share of it;
//! 4. the process's RSS (judge + the small raw client) idle and under load.
//!
//! Not a timed test: it asserts only that every run was correct.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evaler_sandbox::{Limits, RunSpec, Sandbox, SandboxConfig, Stdin, Verdict};
use evaler_server::judge::{sandbox_config_for, Judge, JudgeConfig};
use evaler_server::languages::LanguageSet;
use nix::sys::resource::{getrusage, UsageWho};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const AB: &str = "#include <cstdio>\nint main(){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 1;printf(\"%lld\\n\",a+b);}\n";

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of the process or of the calling thread.
fn cpu(who: UsageWho) -> Duration {
    let Ok(u) = getrusage(who) else {
        return Duration::ZERO;
    };
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The files the judge keeps for the C++ submission (binary and source).
fn submission() -> Vec<(String, Vec<u8>)> {
    let dir = std::env::temp_dir().join(format!("evaler-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("main.cpp");
    std::fs::write(&src, AB).unwrap();
    let bin = dir.join("main");
    let st = std::process::Command::new("g++")
        .args(["-std=gnu++17", "-O2", "-pipe", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("g++ runs");
    assert!(st.success());
    let files = vec![
        ("main".to_string(), std::fs::read(&bin).unwrap()),
        ("main.cpp".to_string(), AB.as_bytes().to_vec()),
    ];
    let _ = std::fs::remove_dir_all(&dir);
    files
}

/// Bare sandbox: `runs` runs split over `threads` boxes. Returns runs per
/// second, the per-run durations of the first thread, and the process's
/// CPU time per run (the supervising side; the programs are children).
fn bare(
    sandbox: &Sandbox,
    files: &[(String, Vec<u8>)],
    threads: usize,
    runs: usize,
) -> (f64, Vec<Duration>, Duration) {
    let mut boxes: Vec<_> = (0..threads).map(|_| sandbox.open_box().unwrap()).collect();
    let cpu_before = cpu(UsageWho::RUSAGE_SELF);
    let start = Instant::now();
    let results: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = boxes
            .iter_mut()
            .map(|b| {
                s.spawn(move || {
                    let mut times = Vec::new();
                    for _ in 0..runs / threads {
                        let t = Instant::now();
                        for (name, data) in files {
                            b.files().write(name, data, true).unwrap();
                        }
                        let mut spec = RunSpec::new("./main");
                        spec.stdin = Stdin::Bytes(b"1 2\n".to_vec());
                        spec.limits = Limits {
                            cpu_time: Some(Duration::from_secs(1)),
                            wall_time: Some(Duration::from_secs(3)),
                            memory_kib: Some(65536),
                            stack_kib: Some(65536),
                            processes: Some(1),
                            output_kib: Some(8192),
                            file_size_kib: Some(65536),
                            open_files: 256,
                        };
                        let running = b.spawn(spec).unwrap();
                        let o = running.wait().unwrap();
                        assert_eq!(
                            (o.verdict, o.stdout.as_slice()),
                            (Verdict::Ok, &b"3\n"[..]),
                            "{}",
                            o.comment
                        );
                        times.push(t.elapsed());
                    }
                    times
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    let cpu_per_run = (cpu(UsageWho::RUSAGE_SELF) - cpu_before) / runs as u32;
    let total: usize = results.iter().map(Vec::len).sum();
    (
        total as f64 / elapsed.as_secs_f64(),
        results.into_iter().next().unwrap_or_default(),
        cpu_per_run,
    )
}

struct JudgeRun {
    rate: f64,
    peak_rss: u64,
    idle_rss: u64,
    latencies: Vec<Duration>,
    sandbox_walls: Vec<Duration>,
    /// Process CPU per test in the pipelined phase, minus the client's.
    server_cpu: Duration,
    client_cpu: Duration,
}

/// The server's runtime: a multi-thread one with 2 workers (as `evaler
/// serve` on this machine), or `EVALER_BENCH_RT=current` for one thread.
fn server_runtime() -> tokio::runtime::Runtime {
    match std::env::var("EVALER_BENCH_RT").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    }
    .enable_all()
    .build()
    .unwrap()
}

/// Starts a judge with `boxes` boxes on a runtime of its own, then drives
/// it from a raw client on another thread (so the client's CPU time can be
/// told apart from the server's).
fn judge_run(sandbox: &Sandbox, boxes: usize, n: usize, sequential: usize) -> JudgeRun {
    let config = JudgeConfig {
        boxes,
        ..JudgeConfig::default()
    };
    let judge = Judge::new(sandbox, LanguageSet::bundled().unwrap(), config).unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        server_runtime().block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            judge.serve(listener, stopped).await.unwrap();
        })
    });
    let addr = addr_rx.recv().unwrap();
    let run = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(client(addr, boxes, n, sequential))
    })
    .join()
    .unwrap();
    let _ = stop.send(());
    server.join().unwrap();
    run
}

async fn client(addr: std::net::SocketAddr, boxes: usize, n: usize, sequential: usize) -> JudgeRun {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let send = |v: Value| format!("{v}\n");
    w.write_all(send(json!({"type":"Compile","id":1,"lang":"cpp","code":AB})).as_bytes())
        .await
        .unwrap();
    let c: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(c["success"], true, "{c}");
    w.write_all(send(json!({"type":"Assign","count":boxes})).as_bytes())
        .await
        .unwrap();
    w.write_all(send(json!({"type":"QLen","length":n + 10})).as_bytes())
        .await
        .unwrap();
    let test = |tid: usize| {
        send(
            json!({"type":"Test","id":1,"tid":tid,"input":"1 2\n","filename":"input",
            "timelimit":1,"memorylimit":65536,"stacklimit":0}),
        )
    };
    // Warm-up.
    for tid in 0..20 {
        w.write_all(test(tid).as_bytes()).await.unwrap();
    }
    for _ in 0..20 {
        lines.next_line().await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = rss_kib("VmRSS:");

    // Sequential latency.
    let mut latencies = Vec::new();
    let mut sandbox_walls = Vec::new();
    for tid in 0..sequential {
        let t = Instant::now();
        w.write_all(test(100_000 + tid).as_bytes()).await.unwrap();
        let r: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        latencies.push(t.elapsed());
        assert_eq!(r["output"], "3\n", "{r}");
        sandbox_walls.push(Duration::from_secs_f64(r["walltime"].as_f64().unwrap()));
    }

    // Pipelined throughput, sampling RSS meanwhile.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib("VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut batch = String::new();
    for tid in 0..n {
        batch.push_str(&test(tid));
    }
    let (self_before, thread_before) = (cpu(UsageWho::RUSAGE_SELF), cpu(UsageWho::RUSAGE_THREAD));
    let start = Instant::now();
    let (_, bad) = tokio::join!(
        async {
            w.write_all(batch.as_bytes()).await.unwrap();
        },
        async {
            let mut bad = 0;
            for _ in 0..n {
                let line = lines.next_line().await.unwrap().unwrap();
                let r: Value = serde_json::from_str(&line).unwrap();
                if r["output"] != "3\n" {
                    bad += 1;
                    eprintln!("unexpected reply: {r}");
                }
            }
            bad
        }
    );
    let elapsed = start.elapsed();
    let (self_after, thread_after) = (cpu(UsageWho::RUSAGE_SELF), cpu(UsageWho::RUSAGE_THREAD));
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    assert_eq!(bad, 0);
    latencies.sort();
    sandbox_walls.sort();
    let client_cpu = thread_after - thread_before;
    JudgeRun {
        rate: n as f64 / elapsed.as_secs_f64(),
        peak_rss: peak.load(Ordering::Relaxed),
        idle_rss,
        latencies,
        sandbox_walls,
        server_cpu: (self_after - self_before).saturating_sub(client_cpu) / n as u32,
        client_cpu: client_cpu / n as u32,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One round: bare sandbox and judge, 1 and 2 boxes.
struct Round {
    bare: [f64; 2],
    bare_cpu: [Duration; 2],
    bare_times: Vec<Duration>,
    judge: [JudgeRun; 2],
}

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("EVALER_BENCH_N", 1000);
    let rounds = env("EVALER_BENCH_ROUNDS", 3).max(1);
    let sequential = 300;
    let baseline_rss = rss_kib("VmRSS:");
    let sandbox = Sandbox::new(sandbox_config_for(
        &LanguageSet::bundled().unwrap(),
        SandboxConfig::default(),
    ))
    .expect("the sandbox starts (run the benchmark as root)");
    let files = submission();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "judge benchmark: {n} trivial tests (C++ a+b) per measurement, {rounds} interleaved rounds, {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        loadavg(),
    );
    // Warm the page cache and the box code paths.
    let _ = bare(&sandbox, &files, 1, 50);
    let mut all = Vec::new();
    for round in 1..=rounds {
        let (b1, mut times, c1) = bare(&sandbox, &files, 1, n);
        let (b2, _, c2) = bare(&sandbox, &files, 2, n);
        times.sort();
        let j1 = judge_run(&sandbox, 1, n, sequential);
        let j2 = judge_run(&sandbox, 2, n, 0);
        let _ = writeln!(
            out,
            "round {round}: bare {b1:.0} / {b2:.0} runs/s, judge {:.0} / {:.0} tests/s (1 / 2 boxes); CPU per test over bare {} / {}",
            j1.rate,
            j2.rate,
            ms(j1.server_cpu.saturating_sub(c1)),
            ms(j2.server_cpu.saturating_sub(c2)),
        );
        all.push(Round {
            bare: [b1, b2],
            bare_cpu: [c1, c2],
            bare_times: times,
            judge: [j1, j2],
        });
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(all.iter().map(f).collect());
    let over = |i: usize| {
        med(&|r: &Round| {
            r.judge[i]
                .server_cpu
                .saturating_sub(r.bare_cpu[i])
                .as_secs_f64()
        })
    };
    let per = |i: usize| med(&|r: &Round| (1.0 / r.judge[i].rate - 1.0 / r.bare[i]).max(0.0));
    let pick = |f: &dyn Fn(&Round) -> f64| -> Duration { Duration::from_secs_f64(med(f)) };
    let _ = writeln!(out, "medians over {rounds} rounds:");
    let _ = writeln!(
        out,
        "  bare sandbox   : {:7.1} runs/s on 1 box, {:7.1} on 2 (run p50 {}, p99 {}; supervisor CPU {} per run)",
        med(&|r| r.bare[0]),
        med(&|r| r.bare[1]),
        ms(pick(&|r| percentile(&r.bare_times, 0.5).as_secs_f64())),
        ms(pick(&|r| percentile(&r.bare_times, 0.99).as_secs_f64())),
        ms(pick(&|r| r.bare_cpu[0].as_secs_f64())),
    );
    let _ = writeln!(
        out,
        "  judge over TCP : {:7.1} tests/s on 1 box, {:7.1} on 2 (pipelined; client CPU {} per test)",
        med(&|r| r.judge[0].rate),
        med(&|r| r.judge[1].rate),
        ms(pick(&|r| r.judge[1].client_cpu.as_secs_f64())),
    );
    let _ = writeln!(
        out,
        "  server CPU per test beyond the bare sandbox's: {} (1 box), {} (2 boxes)",
        ms(Duration::from_secs_f64(over(0))),
        ms(Duration::from_secs_f64(over(1))),
    );
    let _ = writeln!(
        out,
        "  wall time per test beyond the bare sandbox's (1/rate): {} (1 box), {} (2 boxes)",
        ms(Duration::from_secs_f64(per(0))),
        ms(Duration::from_secs_f64(per(1))),
    );
    let _ = writeln!(
        out,
        "  latency, one test at a time (1 box): p50 {}, p99 {}; the sandbox's wall p50 {}",
        ms(pick(
            &|r| percentile(&r.judge[0].latencies, 0.5).as_secs_f64()
        )),
        ms(pick(
            &|r| percentile(&r.judge[0].latencies, 0.99).as_secs_f64()
        )),
        ms(pick(
            &|r| percentile(&r.judge[0].sandbox_walls, 0.5).as_secs_f64()
        )),
    );
    let last = all.last().map(|r| &r.judge);
    if let Some([one, two]) = last {
        let _ = writeln!(
            out,
            "  RSS (process: judge + raw client): {baseline_rss} KiB before the sandbox; judge idle {} KiB (1 box) / {} KiB (2 boxes); peak under load {} / {} KiB; VmHWM {} KiB",
            one.idle_rss,
            two.idle_rss,
            one.peak_rss,
            two.peak_rss,
            rss_kib("VmHWM:"),
        );
    }
    let _ = writeln!(out, "load average at the end: {}", loadavg());
}
