//! The STDIO server in-process (no sandbox, no supervisor): cell framing
//! with random markers, stdin, output without a final newline, incomplete
//! code, interrupts, PING while busy, output caps, background output, and
//! how the interpreter's death and exit are reported. The interpreters run
//! unsandboxed here, so the cells are harmless.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use evaler_proto::{
    PacketReader, PacketWriter, Run, RunResult, RunStatus, SessionReply, SessionRequest,
};
use evaler_server::session::stdio::{serve, StdioConfig};
use evaler_server::session::Dialect;

struct Server {
    w: PacketWriter<UnixStream, SessionRequest>,
    r: PacketReader<BufReader<UnixStream>, SessionReply>,
    thread: Option<JoinHandle<std::io::Result<i32>>>,
    _scratch: tempfile::TempDir,
}

impl Server {
    fn start(dialect: Dialect) -> Server {
        Server::start_with(dialect, |_| {})
    }

    fn start_with(dialect: Dialect, tweak: impl FnOnce(&mut StdioConfig)) -> Server {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let mut config = StdioConfig::new(dialect);
        config.scratch = scratch.path().join("cells");
        tweak(&mut config);
        assert!(
            std::path::Path::new(&config.command[0]).is_file(),
            "{} is not installed (see .ci/install.sh)",
            config.command[0]
        );
        let thread = std::thread::spawn(move || serve(theirs, config));
        Server {
            w: PacketWriter::new(ours.try_clone().unwrap()),
            r: PacketReader::new(BufReader::new(ours)),
            thread: Some(thread),
            _scratch: scratch,
        }
    }

    fn send(&mut self, req: SessionRequest) {
        self.w.write_packet(&req).unwrap();
    }

    fn recv(&mut self) -> SessionReply {
        self.r
            .read_packet()
            .expect("read")
            .expect("the server closed the connection")
            .expect("a valid packet")
    }

    fn run(&mut self, code: &str) -> RunResult {
        self.send(SessionRequest::Run(Run {
            code: code.into(),
            timeout: None,
        }));
        match self.recv() {
            SessionReply::Result(r) => r,
            other => panic!("expected RESULT for {code:?}, got {other:?}"),
        }
    }

    /// The server's exit code once it ended.
    fn join(&mut self) -> i32 {
        self.thread.take().unwrap().join().unwrap().unwrap()
    }
}

#[test]
fn bash_cells_keep_state_and_frame_output_exactly() {
    let mut s = Server::start(Dialect::Bash);
    assert_eq!(s.run("x=41").status, Some(RunStatus::Ok));
    let r = s.run("echo $((x + 1))");
    assert_eq!(r.stdout, "42\n");
    let r = s.run("printf 'no newline'; printf 'err' >&2");
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str()),
        ("no newline", "err")
    );
    let r = s.run("printf '\\n\\n'");
    assert_eq!(r.stdout, "\n\n");
    let r = s.run("read -r a; echo \"[$a]\"; cat; echo end");
    assert_eq!(r.stdout, "[]\nend\n");
    let r = s.run("while true; do");
    assert_eq!(r.status, Some(RunStatus::Error));
    assert!(r.stderr.contains("syntax error"), "{r:?}");
    let r = s.run("false");
    assert_eq!(r.status, Some(RunStatus::Error));
    assert_eq!(s.run("echo $?").stdout, "1\n");
    // Text shaped like a marker is just output.
    let r = s.run("printf '\\n__evaler_%032d 0\\n' 0; echo done");
    assert_eq!(r.stdout, format!("\n__evaler_{} 0\ndone\n", "0".repeat(32)));
    redirections_last_and_cells_still_end(&mut s);
    s.send(SessionRequest::Kill);
    assert_eq!(s.join(), 0);
}

/// `exec >file` and `exec 2>&1` in a cell hold for the cells after it, as
/// at a terminal, and every cell still ends.
fn redirections_last_and_cells_still_end(s: &mut Server) {
    let r = s.run("exec 7>&1 >/dev/null; echo hidden");
    assert_eq!((r.status, r.stdout.as_str()), (Some(RunStatus::Ok), ""));
    assert_eq!(s.run("echo still hidden").stdout, "");
    assert_eq!(s.run("exec >&7 7>&-; echo back").stdout, "back\n");
    let r = s.run("exec 7>&2 2>&1; echo to-stdout >&2");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("to-stdout\n", ""));
    let r = s.run("exec 2>&7 7>&-; echo to-stderr >&2");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", "to-stderr\n"));
    // The copies are read-only (unsetting one fails; zsh drops the rest
    // of that line).
    assert_eq!(s.run("unset __evaler_o").status, Some(RunStatus::Error));
    assert_eq!(s.run("echo ok").stdout, "ok\n");
}

#[test]
fn bash_interrupt_ping_and_background_output() {
    let mut s = Server::start(Dialect::Bash);
    s.run("x=7");
    s.send(SessionRequest::Run(Run {
        code: "sleep 20; echo never".into(),
        timeout: None,
    }));
    std::thread::sleep(Duration::from_millis(100));
    s.send(SessionRequest::Ping);
    assert_eq!(s.recv(), SessionReply::ConnectionOk);
    let t = Instant::now();
    s.send(SessionRequest::Interrupt);
    let SessionReply::Result(r) = s.recv() else {
        panic!("no RESULT")
    };
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.status, Some(RunStatus::Interrupted));
    assert_eq!(r.stdout, "");
    assert_eq!(s.run("echo $x").stdout, "7\n");
    // Output of a background job that comes between cells is reported with
    // the next cell.
    s.run("(sleep 0.2; echo late) &");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(s.run("echo now").stdout, "late\nnow\n");
    s.w.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(s.join(), 0);
}

#[test]
fn output_is_capped_but_the_cell_still_ends() {
    let mut s = Server::start_with(Dialect::Bash, |c| c.output_cap = 1000);
    let r = s.run("head -c 100000 /dev/zero | tr '\\0' x; echo; echo tail");
    assert_eq!(r.stdout.len(), 1000);
    assert_eq!(r.truncated, Some(true));
    assert_eq!(s.run("echo ok").stdout, "ok\n");
}

#[test]
fn death_and_exit_are_reported() {
    let mut s = Server::start(Dialect::Bash);
    s.run("echo hi");
    s.send(SessionRequest::Run(Run {
        code: "echo before; kill -9 $$".into(),
        timeout: None,
    }));
    match s.recv() {
        SessionReply::ConnectionError(e) => {
            let v = e.value.unwrap_or_default();
            assert!(v.contains("signal 9"), "{v}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.join(), 0);

    let mut s = Server::start(Dialect::Zsh);
    let r = s.run("echo bye; exit 5");
    assert_eq!(r.status, Some(RunStatus::Exited));
    assert_eq!(r.exit_code, Some(5));
    assert_eq!(r.stdout, "bye\n");
    assert_eq!(s.join(), 0);
}

#[test]
fn zsh_state_stdin_and_incomplete_code() {
    let mut s = Server::start(Dialect::Zsh);
    s.run("typeset -a arr; arr=(a b c); f() { print -r -- ${#arr} }");
    assert_eq!(s.run("f").stdout, "3\n");
    assert_eq!(s.run("read v; print -r -- \"[$v]\"").stdout, "[]\n");
    let r = s.run("for i in 1 2; do");
    assert_eq!(r.status, Some(RunStatus::Error));
    assert_eq!(s.run("print -n x").stdout, "x");
    redirections_last_and_cells_still_end(&mut s);
}

#[test]
fn cpp_chunks_state_errors_and_crash() {
    let mut s = Server::start(Dialect::Cpp);
    let r =
        s.run("#include <vector>\n#include <string>\nstd::vector<int> v = {1, 2};\nint x = 40;");
    assert_eq!(r.status, Some(RunStatus::Ok), "{r:?}");
    let r = s.run("v.push_back(3);\nx += 2;\nprintf(\"%d %zu\\n\", x, v.size());");
    assert_eq!(r.stdout, "42 3\n", "{r:?}");
    let r =
        s.run("std::string s = \"ok\";\nputs(s.c_str());\nint y = nope;\nputs(\"not reached\");");
    assert_eq!(r.status, Some(RunStatus::Error));
    assert_eq!(r.stdout, "ok\n");
    assert!(r.stderr.contains("undeclared identifier 'nope'"), "{r:?}");
    assert!(!r.stderr.contains("__evaler"), "wrappers leak: {r:?}");
    let r = s.run("throw std::runtime_error(\"boom\");");
    assert_eq!(r.status, Some(RunStatus::Error));
    assert!(r.stderr.contains("boom"), "{r:?}");
    assert_eq!(s.run("printf(\"%d\", x);").stdout, "42");
    s.send(SessionRequest::Run(Run {
        code: "int *volatile p = nullptr;\n*p = 1;".into(),
        timeout: None,
    }));
    match s.recv() {
        SessionReply::ConnectionError(e) => {
            assert!(e.value.unwrap_or_default().contains("signal 11"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.join(), 0);
}
