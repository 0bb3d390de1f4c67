//! Session benchmark (not a test): start-to-first-result, `1+1` round trip,
//! a cell printing 1 MiB, and idle memory per session, for Python and bash,
//! through the client library and `evaler kernel` (sandbox included).
//!
//! ```sh
//! cargo build --release -p evaler --bins --examples
//! sudo target/release/examples/bench_sessions [--evaler target/release/evaler] [--idle 100]
//! ```
//!
//! The peer figures for Jupyter come from `bench/jupyter_bench.py`; both are
//! recorded in docs/BENCHMARKS.md, "Sessions".

use std::path::PathBuf;
use std::time::{Duration, Instant};

use evaler_client::session::{Session, SessionOptions};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (RSS, PSS) in KiB of one process.
fn mem(pid: u32) -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// `pid` and its descendants, with their command names.
fn tree(pid: u32) -> Vec<(u32, String)> {
    let mut all = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map(|x| x.1).unwrap_or("").to_string();
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        all.push((p, ppid, name));
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for (c, pp, name) in &all {
            if *c == p {
                out.push((*c, name.clone()));
            }
            if *pp == p {
                todo.push(*c);
            }
        }
    }
    out
}

struct Lang {
    name: &'static str,
    one_plus_one: &'static str,
    mib: &'static str,
}

const LANGS: [Lang; 2] = [
    Lang {
        name: "python",
        one_plus_one: "1+1",
        mib: "print('x' * (1 << 20), end='')",
    },
    Lang {
        name: "bash",
        one_plus_one: "echo $((1+1))",
        mib: "printf '%*s' 1048576 ''",
    },
];

async fn bench(lang: &Lang, opts: &SessionOptions, idle: usize) {
    println!("## {}", lang.name);
    // Start to first result: a fresh session each time, kept idle a moment
    // in between so starts do not overlap.
    let mut starts = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let s = Session::start(lang.name, opts.clone())
            .await
            .expect("start");
        let r = s.run(lang.one_plus_one).await.unwrap();
        starts.push(ms(t.elapsed()));
        assert!(
            r.value.as_deref() == Some("2") || r.stdout == "2\n",
            "{r:?}"
        );
        s.kill().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "start to first result: p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms",
        percentile(&mut starts, 0.5),
        percentile(&mut starts, 0.9),
        percentile(&mut starts, 0.0)
    );

    let s = Session::start(lang.name, opts.clone()).await.unwrap();
    for _ in 0..200 {
        s.run(lang.one_plus_one).await.unwrap();
    }
    let mut rt = Vec::new();
    for _ in 0..3000 {
        let t = Instant::now();
        s.run(lang.one_plus_one).await.unwrap();
        rt.push(ms(t.elapsed()));
    }
    println!(
        "RUN `{}` round trip: p50 {:.3} ms, p99 {:.3} ms",
        lang.one_plus_one,
        percentile(&mut rt, 0.5),
        percentile(&mut rt, 0.99)
    );
    let mut big = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let r = s.run(lang.mib).await.unwrap();
        big.push(ms(t.elapsed()));
        assert_eq!(r.stdout.len(), 1 << 20);
    }
    println!(
        "cell printing 1 MiB: p50 {:.2} ms, p90 {:.2} ms",
        percentile(&mut big, 0.5),
        percentile(&mut big, 0.9)
    );
    s.kill().await.unwrap();

    // Idle memory: `idle` sessions at once, after one cell each.
    let t = Instant::now();
    let mut sessions = Vec::new();
    for _ in 0..idle {
        let s = Session::start(lang.name, opts.clone()).await.unwrap();
        s.run(lang.one_plus_one).await.unwrap();
        sessions.push(s);
    }
    let started = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut k_rss, mut k_pss, mut o_rss, mut o_pss, mut n_procs) = (0, 0, 0, 0, 0);
    let mut kinds = std::collections::BTreeMap::<String, (u64, u64, u64)>::new();
    for s in &sessions {
        let pid = s.kernel_pid().unwrap();
        for (p, name) in tree(pid) {
            let (rss, pss) = mem(p);
            n_procs += 1;
            if p == pid {
                k_rss += rss;
                k_pss += pss;
            } else {
                o_rss += rss;
                o_pss += pss;
            }
            let e = kinds
                .entry(if p == pid {
                    "evaler kernel".into()
                } else {
                    name
                })
                .or_default();
            e.0 += 1;
            e.1 += rss;
            e.2 += pss;
        }
    }
    let n = sessions.len() as u64;
    println!(
        "{} idle sessions started in {:.1} s; per session: supervisor RSS {:.1} MiB (PSS {:.1}), \
         sandboxed processes RSS {:.1} MiB (PSS {:.1}), total RSS {:.1} MiB (PSS {:.1}), {:.1} processes",
        n,
        started.as_secs_f64(),
        k_rss as f64 / n as f64 / 1024.0,
        k_pss as f64 / n as f64 / 1024.0,
        o_rss as f64 / n as f64 / 1024.0,
        o_pss as f64 / n as f64 / 1024.0,
        (k_rss + o_rss) as f64 / n as f64 / 1024.0,
        (k_pss + o_pss) as f64 / n as f64 / 1024.0,
        n_procs as f64 / n as f64
    );
    for (name, (count, rss, pss)) in kinds {
        println!(
            "  {name}: {:.1} per session, RSS {:.1} MiB, PSS {:.1} MiB each",
            count as f64 / n as f64,
            rss as f64 / count as f64 / 1024.0,
            pss as f64 / count as f64 / 1024.0
        );
    }
    let t = Instant::now();
    for s in &sessions {
        s.run(lang.one_plus_one).await.unwrap();
    }
    println!(
        "  one `1+1` in each of them, in turn: {:.1} ms in all",
        ms(t.elapsed())
    );
    for s in sessions {
        s.kill().await.unwrap();
    }
    println!();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut evaler: Option<PathBuf> = None;
    let mut idle = 100usize;
    let mut only: Option<String> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--evaler" => evaler = args.next().map(PathBuf::from),
            "--idle" => idle = args.next().and_then(|v| v.parse().ok()).unwrap_or(100),
            "--lang" => only = args.next(),
            other => panic!("unknown argument {other}"),
        }
    }
    let evaler = evaler.unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("evaler")
    });
    let opts = SessionOptions {
        evaler: Some(evaler),
        ..SessionOptions::default()
    };
    for lang in &LANGS {
        if only.as_deref().is_none_or(|o| o == lang.name) {
            bench(lang, &opts, idle).await;
        }
    }
}
