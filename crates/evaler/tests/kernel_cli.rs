//! `evaler kernel` end to end, over raw TCP: the CLI form, every session
//! language, and the semantics of docs/PROTOCOL.md "Session semantics"
//! (queueing, PING while busy, INTERRUPT, timeouts, KILL, crashes, exit,
//! RUNANDKILL, limits, isolation). Each test checks that the kernel exits
//! and leaves no process behind.
//!
//! Needs root (the sandbox) and the interpreters from .ci/install.sh; a
//! missing one is a failure with a message, never a skip.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_evaler");

fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "these tests need root (evaler's sandbox does); run them as root, as CI does"
    );
}

/// Pids of `pid` and all its descendants, with their start times.
fn tree(pid: u32) -> HashSet<(u32, u64)> {
    let mut all: Vec<(u32, u32, u64)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        let start = f.get(19).and_then(|x| x.parse().ok()).unwrap_or(0);
        all.push((p, ppid, start));
    }
    let mut out = HashSet::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp, st) in &all {
            if c == p && !out.iter().any(|(x, _)| *x == c) {
                out.insert((c, st));
            }
            if pp == p && !out.iter().any(|(x, _)| *x == c) {
                frontier.push(c);
            }
        }
    }
    out
}

fn alive(procs: &HashSet<(u32, u64)>) -> Vec<u32> {
    procs
        .iter()
        .filter(|(p, st)| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_string();
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    // A zombie waiting for its parent is gone for our purposes.
                    if f.first() == Some(&"Z") {
                        return None;
                    }
                    f.get(19).and_then(|x| x.parse::<u64>().ok())
                })
                .is_some_and(|s| s == *st)
        })
        .map(|(p, _)| *p)
        .collect()
}

struct Kernel {
    child: Child,
    addr: SocketAddr,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    procs: HashSet<(u32, u64)>,
}

fn spawn_bin(bin: &Path, lang: &str, extra: &[&str]) -> (Child, SocketAddr) {
    require_root();
    let mut child = Command::new(bin)
        .args(["kernel", "--lang", lang])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run evaler kernel");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("read the address");
    let addr: SocketAddr = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("first stdout line is not IP:PORT: {line:?}"));
    (child, addr)
}

impl Kernel {
    fn start(lang: &str) -> Kernel {
        Kernel::start_with(lang, &[])
    }

    fn start_with(lang: &str, extra: &[&str]) -> Kernel {
        Kernel::start_bin(Path::new(BIN), lang, extra)
    }

    fn start_bin(bin: &Path, lang: &str, extra: &[&str]) -> Kernel {
        let (child, addr) = spawn_bin(bin, lang, extra);
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut k = Kernel {
            child,
            addr,
            stream,
            reader,
            procs: HashSet::new(),
        };
        // The session is up once a cell has run.
        let r = k.run(match lang {
            "cpp" => "int __warm = 0;",
            _ => "true",
        });
        assert_eq!(r["type"], "RESULT", "{lang} did not start: {r}");
        k.procs = tree(k.child.id());
        k
    }

    fn send(&mut self, v: Value) {
        let mut line = serde_json::to_vec(&v).unwrap();
        line.push(b'\n');
        self.stream.write_all(&line).unwrap();
    }

    fn send_raw(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a reply");
        assert!(n > 0, "the kernel closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
    }

    /// Reads until EOF (the kernel closed the connection).
    fn expect_eof(&mut self) {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap_or(0);
        assert_eq!(n, 0, "expected EOF, got {line:?}");
    }

    fn run(&mut self, code: &str) -> Value {
        self.send(json!({"type": "RUN", "code": code}));
        self.recv()
    }

    fn run_t(&mut self, code: &str, timeout: f64) -> Value {
        self.send(json!({"type": "RUN", "code": code, "timeout": timeout}));
        self.recv()
    }

    fn ping(&mut self) -> Value {
        self.send(json!({"type": "PING"}));
        self.recv()
    }

    /// Waits for the kernel to exit and checks nothing of it is left.
    fn assert_gone(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(
                    st.success() || st.code() == Some(0),
                    "kernel exit status {st}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the kernel did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let left = alive(&self.procs);
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "processes left behind: {left:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let name = format!("evaler-{}", self.child.id());
        let left = dirs_named(Path::new("/sys/fs/cgroup"), &name, 4);
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }

    fn kill(mut self) {
        self.send(json!({"type": "KILL"}));
        self.assert_gone(Duration::from_secs(5));
    }
}

impl Drop for Kernel {
    /// A failed test must not leave a kernel behind.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn stdout(r: &Value) -> &str {
    r["stdout"]
        .as_str()
        .unwrap_or_else(|| panic!("no stdout in {r}"))
}

fn stderr(r: &Value) -> &str {
    r["stderr"]
        .as_str()
        .unwrap_or_else(|| panic!("no stderr in {r}"))
}

#[test]
fn cli_prints_the_address_first_and_speaks_raw_tcp() {
    let mut k = Kernel::start("python");
    assert!(k.addr.ip().is_loopback());
    assert_eq!(k.ping(), json!({"type": "CONNECTION-OK"}));
    // Malformed packets get an Error and the session goes on.
    k.send_raw(b"not json\n");
    let r = k.recv();
    assert_eq!(r["type"], "Error");
    assert!(
        r["value"].as_str().unwrap().starts_with("invalid JSON"),
        "{r}"
    );
    k.send_raw(b"{\"type\":\"RUN\"}\n");
    assert_eq!(
        k.recv()["value"],
        "missing required field \"code\" in RUN packet"
    );
    k.send(json!({"type": "RUN", "code": "1", "timeout": -1}));
    assert_eq!(
        k.recv()["value"],
        "field \"timeout\" of RUN packet must not be negative (found -1)"
    );
    // CRLF and blank lines are fine.
    k.send_raw(b"\r\n{\"type\":\"RUN\",\"code\":\"6*7\"}\r\n");
    let r = k.recv();
    assert_eq!(r["value"], "42", "{r}");
    k.kill();
}

/// `evaler kernel` becomes `evaler-kernel` (same pid, see cmd/kernel.rs)
/// when that sits beside it, and supervises in-process when it does not;
/// both serve the session, STDIO kernels too (their STDIO server is the
/// supervisor's own executable, either one). Runs as root (the sandbox).
#[test]
fn kernel_hands_over_to_the_small_executable_or_runs_alone() {
    let exe = |k: &Kernel| std::fs::read_link(format!("/proc/{}/exe", k.child.id())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("evaler");
    std::fs::copy(BIN, &alone).unwrap();
    for (lang, code) in [("python", "print(6*7)"), ("bash", "echo $((6*7))")] {
        let mut k = Kernel::start(lang);
        assert_eq!(exe(&k).file_name().unwrap(), "evaler-kernel", "{lang}");
        assert_eq!(stdout(&k.run(code)), "42\n", "{lang}");
        k.kill();

        let mut k = Kernel::start_bin(&alone, lang, &[]);
        assert_eq!(exe(&k), alone, "{lang}");
        assert_eq!(stdout(&k.run(code)), "42\n", "{lang}");
        k.kill();
    }
}

#[test]
fn state_survives_between_runs_in_every_language() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("python", "x = 41", "print(x + 1)", "42\n"),
        ("ruby", "x = 41", "puts x + 1", "42\n"),
        ("bash", "x=41; f() { echo $((x + $1)); }", "f 1", "42\n"),
        ("zsh", "typeset -A m; m[a]=41", "echo $((m[a] + 1))", "42\n"),
        (
            "cpp",
            "int x = 41;\nint add(int a) { return x + a; }",
            "printf(\"%d\\n\", add(1));",
            "42\n",
        ),
    ];
    let handles: Vec<_> = cases
        .iter()
        .map(|&(lang, set, get, want)| {
            std::thread::spawn(move || {
                let mut k = Kernel::start(lang);
                let r = k.run(set);
                assert_eq!(r["status"], "ok", "{lang}: {r}");
                let r = k.run(get);
                assert_eq!(stdout(&r), want, "{lang}: {r}");
                assert_eq!(r["status"], "ok", "{lang}: {r}");
                k.kill();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn output_capture_errors_and_stdin() {
    let mut k = Kernel::start("python");
    let r = k.run(
        "import sys, os, subprocess\nprint('out')\nprint('err', file=sys.stderr)\n\
         subprocess.run(['echo', 'child'])\nos.write(1, b'raw')\nsys.stdout.write('unflushed')",
    );
    assert_eq!(stdout(&r), "out\nchild\nrawunflushed");
    assert_eq!(stderr(&r), "err\n");
    let r = k.run("def f():\n    return 1/0\nf()");
    assert_eq!(r["status"], "error");
    let e = stderr(&r);
    assert!(
        e.contains("Traceback") && e.contains("ZeroDivisionError"),
        "{e}"
    );
    let r = k.run("input()");
    assert_eq!(r["status"], "error");
    assert!(stderr(&r).contains("EOFError"), "{r}");
    k.kill();

    let mut k = Kernel::start("ruby");
    let r = k.run("raise ArgumentError, 'nope'");
    assert_eq!(r["status"], "error");
    assert!(stderr(&r).contains("nope (ArgumentError)"), "{r}");
    let r = k.run("[1, 2].map { |v| v * 2 }");
    assert_eq!(r["value"], "[2, 4]");
    k.kill();

    let mut k = Kernel::start("bash");
    let r = k.run("read line; echo \"got [$line] $?\"; cat; echo done");
    assert_eq!(stdout(&r), "got [] 1\ndone\n", "{r}");
    let r = k.run("echo -n no newline; echo err >&2; sh -c 'echo child; exit 3'");
    assert_eq!(stdout(&r), "no newlinechild\n");
    assert_eq!(stderr(&r), "err\n");
    assert_eq!(r["status"], "error");
    let r = k.run("if true; then");
    assert_eq!(r["status"], "error");
    assert!(stderr(&r).contains("syntax error"), "{r}");
    let r = k.run("echo $?; echo still here");
    assert_eq!(stdout(&r), "2\nstill here\n", "{r}");
    k.kill();
}

#[test]
fn sentinel_looking_text_cannot_end_a_cell() {
    let mut k = Kernel::start("bash");
    // Markers have the shape "\n__evaler_<32 hex> <n>\n"; the token is
    // random per cell, so none of these is one.
    let fake = "printf '\\n__evaler_00000000000000000000000000000000 0\\n'; \
                printf '\\n__evaler_%s 0\\n' abc >&2; declare -f __evaler_end >/dev/null; \
                echo \"$__evaler_last\" | wc -c; sleep 0.2; echo after";
    let r = k.run(fake);
    let out = stdout(&r);
    assert!(out.ends_with("after\n"), "{r}");
    assert!(
        out.contains("__evaler_00000000000000000000000000000000 0"),
        "{r}"
    );
    let r = k.run("echo next");
    assert_eq!(stdout(&r), "next\n");
    k.kill();
}

#[test]
fn queued_runs_and_ping_while_busy() {
    let mut k = Kernel::start("python");
    k.send(json!({"type": "RUN", "code": "import time; time.sleep(0.5); 'first'"}));
    k.send(json!({"type": "RUN", "code": "'second'"}));
    let t = Instant::now();
    k.send(json!({"type": "PING"}));
    assert_eq!(k.recv(), json!({"type": "CONNECTION-OK"}));
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "PING waited for the cell"
    );
    assert_eq!(k.recv()["value"], "'first'");
    assert_eq!(k.recv()["value"], "'second'");
    k.kill();
}

#[test]
fn interrupt_keeps_state() {
    let mut k = Kernel::start("python");
    k.run("x = 7");
    k.send(json!({"type": "RUN", "code": "while True: pass"}));
    std::thread::sleep(Duration::from_millis(200));
    k.send(json!({"type": "INTERRUPT"}));
    let r = k.recv();
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(stderr(&r).contains("KeyboardInterrupt"));
    assert_eq!(k.run("x")["value"], "7");
    k.kill();

    let mut k = Kernel::start("bash");
    k.run("x=7");
    k.send(json!({"type": "RUN", "code": "for i in 1 2 3; do sleep 10; done; echo never"}));
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    k.send(json!({"type": "INTERRUPT"}));
    let r = k.recv();
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(!stdout(&r).contains("never"));
    assert_eq!(stdout(&k.run("echo $x")), "7\n");
    k.kill();
}

#[test]
fn timeouts_stop_the_cell_or_end_the_session() {
    let mut k = Kernel::start("python");
    k.run("y = 1");
    let t = Instant::now();
    let r = k.run_t("import time\ntime.sleep(30)", 0.3);
    let took = t.elapsed();
    assert_eq!(r["status"], "timeout", "{r}");
    // The cell stops within 100 ms of its deadline or the session is ended
    // (next case); formatting the traceback after that may take longer on a
    // loaded machine (the bound here is what the supervisor allows once the
    // server has said STOPPED).
    assert!(took < Duration::from_millis(2300), "{took:?}");
    assert_eq!(k.run("y")["value"], "1");
    // The server said STOPPED, then took 400 ms to format the traceback (a
    // chained exception's slow __str__, standing in for a first traceback
    // import on a saturated machine): the cell was stopped in time, so this
    // is a timeout, not a crash.
    let r = k.run_t(
        "import time\nclass Slow(Exception):\n    def __str__(self):\n        time.sleep(0.4)\n        return 'slow'\ntry:\n    raise Slow()\nexcept Slow:\n    time.sleep(30)",
        0.3,
    );
    assert_eq!(r["status"], "timeout", "{r}");
    assert!(stderr(&r).contains("Slow: slow"), "{r}");
    assert_eq!(k.run("y")["value"], "1");
    // A cell that ignores SIGINT (as a loop in C does): the session is
    // ended 100 ms after the deadline.
    let t = Instant::now();
    let r = k.run_t(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
        0.3,
    );
    let took = t.elapsed();
    assert_eq!(r["status"], "crashed", "{r}");
    assert!(stderr(&r).contains("timeout"), "{r}");
    assert!(took < Duration::from_millis(600), "{took:?}");
    assert_eq!(k.ping()["type"], "CONNECTION-ERROR");
    assert_eq!(k.run("1")["type"], "CONNECTION-ERROR");
    let _ = k.stream.shutdown(std::net::Shutdown::Both);
    k.assert_gone(Duration::from_secs(5));

    // Ruby says STOPPED too: a slow cause message is formatted after it.
    let mut k = Kernel::start("ruby");
    let r = k.run_t(
        "class Slow < StandardError; def message; sleep 0.4; 'slow'; end; end\nbegin; raise Slow; rescue Slow; sleep 30; end",
        0.3,
    );
    assert_eq!(r["status"], "timeout", "{r}");
    assert!(stderr(&r).contains("slow (Slow)"), "{r}");
    k.kill();
}

/// SIGTERM, SIGINT and SIGHUP end `evaler kernel` as KILL does: it exits
/// with 128 + the signal, leaving no process and none of its cgroups
/// (`evaler-PID` in every hierarchy). Runs as root (sandbox, cgroups).
#[test]
fn signals_end_the_kernel_and_leave_nothing() {
    for (name, number) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
        let mut k = Kernel::start("python");
        k.run("import time");
        let pid = k.child.id();
        let mine = dirs_named(Path::new("/sys/fs/cgroup"), &format!("evaler-{pid}"), 4);
        assert!(!mine.is_empty(), "the kernel's cgroups are found");
        let st = Command::new("kill")
            .args(["-s", name, &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        let st = loop {
            if let Some(st) = k.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "SIG{name}: still running");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(st.code(), Some(128 + number), "SIG{name}: {st}");
        let deadline = Instant::now() + Duration::from_secs(2);
        while !alive(&k.procs).is_empty() {
            assert!(
                Instant::now() < deadline,
                "SIG{name}: processes left: {:?}",
                alive(&k.procs)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = dirs_named(Path::new("/sys/fs/cgroup"), &format!("evaler-{pid}"), 4);
        assert!(left.is_empty(), "SIG{name}: cgroups left: {left:?}");
    }
}

/// Directories called `name` under `dir`, `depth` levels down at most (an
/// instance's cgroup sits under evaler's own, e.g. memory/process_api/ID/).
fn dirs_named(dir: &Path, name: &str, depth: u32) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name() == name {
            found.push(e.path());
        } else if depth > 1 {
            found.extend(dirs_named(&e.path(), name, depth - 1));
        }
    }
    found
}

#[test]
fn kill_during_an_endless_loop_leaves_nothing() {
    for (lang, code) in [
        ("python", "while True: pass"),
        ("bash", "while :; do :; done"),
    ] {
        let mut k = Kernel::start(lang);
        k.send(json!({"type": "RUN", "code": code}));
        std::thread::sleep(Duration::from_millis(100));
        k.procs.extend(tree(k.child.id()));
        let t = Instant::now();
        k.send(json!({"type": "KILL"}));
        k.expect_eof();
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{lang}: {:?}",
            t.elapsed()
        );
        k.assert_gone(Duration::from_secs(3));
    }
}

#[test]
fn crashes_are_connection_errors() {
    for (lang, code) in [
        ("python", "import os; os._exit(3)"),
        ("bash", "kill -9 $$"),
        ("cpp", "int *volatile __p = nullptr;\n*__p = 1;"),
    ] {
        let mut k = Kernel::start(lang);
        let r = k.run(code);
        assert_eq!(r["type"], "CONNECTION-ERROR", "{lang}: {r}");
        let p = k.ping();
        assert_eq!(p["type"], "CONNECTION-ERROR", "{lang}: {p}");
        assert_eq!(k.run("1")["type"], "CONNECTION-ERROR");
        // The kernel ends once the client has gone.
        let _ = k.stream.shutdown(std::net::Shutdown::Both);
        k.assert_gone(Duration::from_secs(5));
    }
}

#[test]
fn exit_and_runandkill_end_the_session() {
    let mut k = Kernel::start("python");
    let r = k.run("exit(3)");
    assert_eq!(r["status"], "exited", "{r}");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(k.ping()["type"], "CONNECTION-ERROR");
    let _ = k.stream.shutdown(std::net::Shutdown::Both);
    k.assert_gone(Duration::from_secs(5));

    let mut k = Kernel::start("bash");
    let r = k.run("echo bye; exit 4");
    assert_eq!(r["status"], "exited", "{r}");
    assert_eq!(r["exit_code"], 4);
    assert_eq!(stdout(&r), "bye\n");
    let _ = k.stream.shutdown(std::net::Shutdown::Both);
    k.assert_gone(Duration::from_secs(5));

    let mut k = Kernel::start("ruby");
    k.send(json!({"type": "RUNANDKILL", "code": "puts 'last'"}));
    let r = k.recv();
    assert_eq!(stdout(&r), "last\n");
    k.expect_eof();
    k.assert_gone(Duration::from_secs(5));
}

#[test]
fn hostile_cells_cannot_reach_the_network_or_the_host() {
    let mut k = Kernel::start("python");
    let port = k.addr.port();
    let r = k.run(&format!(
        "import socket, os\n\
         res = []\n\
         for host in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n\
         \x20   try:\n\
         \x20       socket.create_connection(host, timeout=1); res.append('connected')\n\
         \x20   except OSError as e:\n\
         \x20       res.append('refused')\n\
         for p in ['/etc/shadow', '/root', '/work', '/run/evaler', '/home']:\n\
         \x20   res.append(os.path.exists(p))\n\
         res.append(os.getuid() != 0)\n\
         res"
    ));
    assert_eq!(
        r["value"], "['refused', 'refused', False, False, False, False, False, True]",
        "{r}"
    );
    let r = k.run("open('/usr/evil', 'w')");
    assert!(
        stderr(&r).contains("Read-only file system") || stderr(&r).contains("Permission denied"),
        "{r}"
    );
    k.kill();
}

#[test]
fn memory_limit_ends_the_session() {
    let mut k = Kernel::start_with("python", &["--memory", "131072"]);
    let r = k.run("b = bytearray(400 * 1024 * 1024)");
    assert_eq!(r["type"], "CONNECTION-ERROR", "{r}");
    let why = r["value"].as_str().unwrap_or_default();
    assert!(why.contains("memory") || why.contains("MemoryError"), "{r}");
    let _ = k.stream.shutdown(std::net::Shutdown::Both);
    k.assert_gone(Duration::from_secs(5));
}
