//! Shared by the `judge_*` integration tests: an in-process judge on
//! 127.0.0.1:0, a raw NDJSON client (plain `TcpStream` + lines, so the wire
//! itself is what is tested), and a C test program with many behaviours.
//!
//! These tests need root, like the sandbox they drive; without it they fail
//! with the sandbox's one-sentence explanation instead of being skipped.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use evaler_sandbox::{Sandbox, SandboxConfig};
use evaler_server::judge::{Judge, JudgeConfig, JudgeMonitor};
use evaler_server::languages::LanguageSet;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// How long any single reply may take before a test fails.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// One sandbox per test process (the sandbox allows one instance per
/// process); every judge of the process opens its boxes from it.
pub fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let config = evaler_server::judge::sandbox_config_for(
            &LanguageSet::bundled().expect("bundled languages"),
            SandboxConfig::default(),
        );
        Sandbox::new(config).unwrap_or_else(|e| {
            panic!("the judge tests need the sandbox, which needs root (CI runs them as root): {e}")
        })
    })
}

/// A running in-process judge.
pub struct Server {
    pub addr: SocketAddr,
    pub uids: Vec<u32>,
    pub monitor: JudgeMonitor,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Stops the judge and waits until its boxes are closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A small config for tests: 2 boxes, 1 MiB packets, small output cap.
pub fn config() -> JudgeConfig {
    JudgeConfig {
        boxes: 2,
        max_packet: 1 << 20,
        output_kib: 64,
        ..JudgeConfig::default()
    }
}

pub async fn start(config: JudgeConfig) -> Server {
    start_with(config, LanguageSet::bundled().unwrap()).await
}

pub async fn start_with(config: JudgeConfig, languages: LanguageSet) -> Server {
    let judge = tokio::task::spawn_blocking(move || Judge::new(sandbox(), languages, config))
        .await
        .unwrap()
        .expect("judge starts");
    let uids = judge.box_uids().to_vec();
    let monitor = judge.monitor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        judge.serve(listener, stopped).await.expect("judge serves");
    });
    Server {
        addr,
        uids,
        monitor,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A raw NDJSON connection.
pub struct Raw {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (r, w) = stream.into_split();
        Raw {
            lines: BufReader::new(r).lines(),
            write: w,
        }
    }

    pub async fn send(&mut self, packet: &Value) {
        self.send_bytes(format!("{packet}\n").as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.expect("write");
    }

    /// The next packet, or `None` at end of stream.
    pub async fn recv(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(REPLY_TIMEOUT, self.lines.next_line())
            .await
            .expect("a reply in time")
            .ok()??;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}")))
    }

    pub async fn expect(&mut self) -> Value {
        self.recv().await.expect("a packet, not end of stream")
    }

    /// Waits for end of stream (the server closed), failing on packets.
    pub async fn expect_closed(&mut self) {
        if let Some(p) = self.recv().await {
            panic!("expected the connection to close, got {p}");
        }
    }

    /// Half-closes nothing: drops both halves.
    pub fn close(self) {}
}

/// The C test program: its first stdin word picks a behaviour (or, with
/// empty stdin, the first word of the file `data.in`).
pub const MULTI_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    char mode[32] = "";
    long long a = 0, b = 0;
    if (scanf("%31s %lld %lld", mode, &a, &b) < 1) {
        FILE *f = fopen("data.in", "r");
        if (!f || fscanf(f, "%31s %lld %lld", mode, &a, &b) < 1) return 2;
    }
    if (!strcmp(mode, "sum")) printf("%lld\n", a + b);
    else if (!strcmp(mode, "spin")) {
        while (clock() < a * (CLOCKS_PER_SEC / 1000)) {}
        printf("spun\n");
    } else if (!strcmp(mode, "sleep")) { usleep(a * 1000); printf("slept\n"); }
    else if (!strcmp(mode, "segv")) { volatile int *p = 0; *p = 1; }
    else if (!strcmp(mode, "exit")) return (int)a;
    else if (!strcmp(mode, "mem")) {
        size_t n = (size_t)a << 20; char *p = malloc(n);
        for (size_t i = 0; i < n; i += 4096) p[i] = 1;
        printf("%d\n", p[n - 1]);
    } else if (!strcmp(mode, "out")) {
        for (long long i = 0; i < a; i++) fputs("0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\n", stdout);
    } else return 3;
    return 0;
}
"#;

pub fn compile(id: i64, lang: &str, code: &str) -> Value {
    json!({"type": "Compile", "code": code, "lang": lang, "id": id})
}

/// A `Test` with stdin input and a 1 s / 256 MiB limit.
pub fn test(id: i64, tid: i64, input: &str) -> Value {
    json!({
        "type": "Test", "id": id, "tid": tid, "input": input, "filename": "input",
        "timelimit": 1, "memorylimit": 262144, "stacklimit": 0,
    })
}

/// Compiles [`MULTI_C`] as `id` and checks the reply.
pub async fn compile_multi(raw: &mut Raw, id: i64) {
    raw.send(&compile(id, "c", MULTI_C)).await;
    let r = raw.expect().await;
    assert_eq!(r["type"], "CResponse", "{r}");
    assert_eq!(r["success"], true, "{r}");
}

/// Host pids whose real uid is one of `uids`.
pub fn processes_of(uids: &[u32]) -> Vec<i32> {
    let wanted: HashSet<u32> = uids.iter().copied().collect();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if uid.is_some_and(|u| wanted.contains(&u)) {
            found.push(pid);
        }
    }
    found
}

/// The `cgroup.procs` of the boxes with these uids (`evaler-<pid>/box-<slot>`
/// under every controller), with what each holds.
pub fn box_cgroup_procs(uids: &[u32]) -> Vec<(PathBuf, String)> {
    let base = sandbox().config().uid_base;
    let names: HashSet<String> = uids.iter().map(|u| format!("box-{}", u - base)).collect();
    fn walk(dir: &Path, depth: usize, instance: &str, out: &mut Vec<PathBuf>) {
        if depth > 6 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if e.file_name().to_str() == Some(instance) {
                out.push(path);
            } else {
                walk(&path, depth + 1, instance, out);
            }
        }
    }
    let instance = format!("evaler-{}", std::process::id());
    let mut instances = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 0, &instance, &mut instances);
    let mut out = Vec::new();
    for inst in instances {
        let Ok(entries) = std::fs::read_dir(&inst) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| names.contains(n)) {
                let procs = e.path().join("cgroup.procs");
                let text = std::fs::read_to_string(&procs).unwrap_or_default();
                out.push((procs, text));
            }
        }
    }
    out
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
