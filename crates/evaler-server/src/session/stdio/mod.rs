//! The STDIO language server (`evaler stdio-server`): speaks the session
//! protocol on a socket and drives an interpreter that only knows standard
//! input and output: bash, zsh, and clang-repl for C++.
//!
//! It runs inside the sandbox, started by `evaler kernel`, one interpreter
//! per process. Blocking and single-threaded: one `poll` loop watches the
//! socket (PING, INTERRUPT and KILL are served while a cell runs), the
//! interpreter's stdout and stderr, and its stdin (input is written without
//! ever blocking, so a chatty interpreter cannot deadlock against a long
//! cell). The interpreter's death is noticed with `waitpid(WNOHANG)` every
//! 10 ms while a cell runs and every 200 ms while idle.
//!
//! No signal is blocked or caught: a blocked mask would be inherited by the
//! interpreter and everything it starts (std's `Command` keeps the mask),
//! and SIGINT could no longer interrupt a cell. So the supervisor forwards
//! INTERRUPT as a packet, and this server sends SIGINT to the interpreter's
//! process group.
//!
//! # Knowing when a cell is over
//!
//! After the cell, the interpreter is made to print `\n<token> <number>\n`
//! on stdout and on stderr, where `<token>` is 128 random bits drawn for
//! that exchange. The cell's output is everything before the marker (the
//! `\n` in front of it is ours, so output without a final newline comes back
//! exactly as written); the number is the shell's `$?` (or, for C++, whether
//! the chunk ran). The cell never sees the token before the marker is
//! printed, so no output it produces can end it early, and stdin of the cell
//! is `/dev/null`, so a cell that reads stdin gets EOF instead of swallowing
//! the marker command. The dialects are in [`shell`] and [`cpp`].
//!
//! Output of background processes that arrives between cells is kept
//! (capped) and reported with the next cell.

pub mod cpp;
mod shell;

use std::collections::VecDeque;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use evaler_proto::{
    output_into_string, ConnectionError, EncodeError, PacketReader, PacketWriter, RunResult,
    RunStatus, SessionReply, SessionRequest, StreamError,
};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::kernels::Dialect;

/// Default cap on each of stdout and stderr per cell, bytes (the native
/// servers use the same); more is dropped and `truncated` is set.
pub const DEFAULT_OUTPUT_CAP: usize = 8 << 20;

/// After forwarding SIGINT, how long to wait for the end-of-cell marker
/// before asking for it again (the SIGINT may have hit the marker command
/// itself).
const RESEND_AFTER: Duration = Duration::from_millis(50);

/// How often the interpreter is checked for death while a cell runs.
const TICK: Duration = Duration::from_millis(10);

/// The same while idle (the supervisor knows whether the server process is
/// alive; this only makes a dead interpreter reported sooner).
const IDLE_TICK: Duration = Duration::from_millis(200);

/// How the STDIO server runs.
#[derive(Debug, Clone)]
pub struct StdioConfig {
    pub dialect: Dialect,
    /// The interpreter's argv.
    pub command: Vec<String>,
    /// Bytes kept of stdout and of stderr per cell.
    pub output_cap: usize,
    /// Where shell cells are written (`. <scratch>/cell-N`).
    pub scratch: PathBuf,
    /// How long the interpreter may take to come up.
    pub start_timeout: Duration,
}

impl StdioConfig {
    /// The default configuration of a dialect with its usual command.
    pub fn new(dialect: Dialect) -> StdioConfig {
        StdioConfig {
            dialect,
            command: default_command(dialect),
            output_cap: DEFAULT_OUTPUT_CAP,
            scratch: PathBuf::from("/tmp/.evaler"),
            start_timeout: Duration::from_secs(20),
        }
    }
}

/// The interpreter command used when none is given (the same as the
/// bundled `kernels.toml`).
pub fn default_command(dialect: Dialect) -> Vec<String> {
    let v: &[&str] = match dialect {
        Dialect::Bash => &[
            "/usr/bin/bash",
            "--noprofile",
            "--norc",
            "--noediting",
            "-i",
        ],
        Dialect::Zsh => &["/usr/bin/zsh", "-f", "-i"],
        Dialect::Cpp => &[
            "/usr/lib/llvm-*/bin/clang-repl",
            "--Xcc=-w",
            "--Xcc=-std=c++17",
        ],
    };
    let mut argv: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    if argv[0].contains('*') {
        if let Some(p) = super::kernels::resolve_glob(&argv[0]) {
            argv[0] = p;
        }
    }
    argv
}

/// Serves one connection until the session ends. Returns the process exit
/// code to use.
pub fn serve(stream: UnixStream, config: StdioConfig) -> io::Result<i32> {
    // Started as /proc/self/fd/3 (see launch.rs), the process would show
    // as `3` in ps and top.
    let _ = nix::sys::prctl::set_name(c"evaler-stdio");
    let conn = Conn::new(stream)?;
    let name = config
        .command
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .unwrap_or_default();
    let mut server = Server {
        conn,
        interp: None,
        carry: [Vec::new(), Vec::new()],
        carry_truncated: false,
        inbox: VecDeque::new(),
        interrupted: false,
        name,
        config,
    };
    server.main()
}

/// What ends an exchange other than the marker.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The interpreter died; what it printed until then.
    Died {
        status: ExitStatus,
        out: Vec<u8>,
        err: Vec<u8>,
    },
    /// KILL arrived.
    Killed,
    /// The supervisor closed the connection.
    ClientGone,
    /// The interpreter did not answer in time (start-up only).
    TimedOut,
    Io(io::Error),
}

/// One completed exchange: the output before the markers and the number
/// after them.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    pub out: Vec<u8>,
    pub err: Vec<u8>,
    pub code: i64,
    pub truncated: bool,
}

/// The socket to the supervisor: nonblocking reads, blocking writes.
struct Conn {
    sock: UnixStream,
    reader: PacketReader<BufReader<UnixStream>, SessionRequest>,
    writer: PacketWriter<UnixStream, SessionReply>,
    eof: bool,
}

type Incoming = Result<evaler_proto::SessionRequest, evaler_proto::DecodeError>;

impl Conn {
    fn new(sock: UnixStream) -> io::Result<Conn> {
        sock.set_nonblocking(true)?;
        Ok(Conn {
            reader: PacketReader::new(BufReader::new(sock.try_clone()?)),
            writer: PacketWriter::new(sock.try_clone()?),
            sock,
            eof: false,
        })
    }

    /// Every packet available now. A fatal stream error is answered and
    /// ends the connection.
    fn read_available(&mut self) -> Vec<Incoming> {
        let mut out = Vec::new();
        while !self.eof {
            match self.reader.read_packet() {
                Ok(Some(p)) => out.push(p),
                Ok(None) => self.eof = true,
                Err(StreamError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(StreamError::Decode(e)) => {
                    let _ = self.send(&SessionReply::from(&e));
                    self.eof = true;
                }
                Err(_) => self.eof = true,
            }
        }
        out
    }

    fn send(&mut self, reply: &SessionReply) -> io::Result<()> {
        self.sock.set_nonblocking(false)?;
        let res = self.writer.write_packet(reply);
        self.sock.set_nonblocking(true)?;
        match res {
            Ok(()) => Ok(()),
            Err(StreamError::Io(e)) => Err(e),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    /// Sends a RESULT, cutting the output if the packet would be too large
    /// to send (possible only with megabytes of control characters).
    fn send_result(&mut self, result: RunResult) -> io::Result<()> {
        let mut reply = SessionReply::Result(result);
        loop {
            self.sock.set_nonblocking(false)?;
            let res = self.writer.write_packet(&reply);
            self.sock.set_nonblocking(true)?;
            match (res, &mut reply) {
                (Ok(()), _) => return Ok(()),
                (
                    Err(StreamError::Encode(EncodeError::TooLarge { .. })),
                    SessionReply::Result(r),
                ) if r.stdout.len() + r.stderr.len() > 1024 => {
                    let (o, e) = (r.stdout.len() / 2, r.stderr.len() / 2);
                    cut_string(&mut r.stdout, o);
                    cut_string(&mut r.stderr, e);
                    r.truncated = Some(true);
                }
                (Err(StreamError::Io(e)), _) => return Err(e),
                (Err(e), _) => return Err(io::Error::other(e.to_string())),
            }
        }
    }
}

/// The largest character boundary of `s` at or below `max` bytes.
pub(crate) fn char_floor(s: &str, max: usize) -> usize {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Truncates to at most `max` bytes on a character boundary.
pub(crate) fn cut_string(s: &mut String, max: usize) {
    s.truncate(char_floor(s, max));
}

/// The interpreter process and its pipes (all nonblocking).
pub(crate) struct Interp {
    child: Child,
    pgid: Pid,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    status: Option<ExitStatus>,
}

fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    fcntl(
        fd.as_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(io::Error::from)?;
    Ok(())
}

impl Interp {
    fn spawn(argv: &[String]) -> io::Result<Interp> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        // std resets the signal mask and SIGPIPE in the child; the process
        // group lets an interrupt reach the whole foreground pipeline.
        let mut child = Command::new(program)
            .args(args)
            .env_remove("EVALER_FD")
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        if let Some(f) = &stdin {
            set_nonblocking(f)?;
        }
        for f in [
            stdout.as_ref().map(|f| f.as_fd()),
            stderr.as_ref().map(|f| f.as_fd()),
        ]
        .into_iter()
        .flatten()
        {
            set_nonblocking(f)?;
            // Fewer round trips for big outputs (best effort: the system's
            // pipe-max-size may be lower).
            let _ = fcntl(f, FcntlArg::F_SETPIPE_SZ(1 << 20));
        }
        let pgid = Pid::from_raw(child.id() as i32);
        Ok(Interp {
            child,
            pgid,
            stdin,
            stdout,
            stderr,
            status: None,
        })
    }

    fn check_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    fn signal(&self, sig: Signal) {
        let _ = killpg(self.pgid, sig);
    }

    /// Ends the interpreter and everything in its process group.
    fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Output of one stream for one exchange: capped, with the end marker
/// looked for in everything that arrives, so the cap never hides it.
///
/// Bytes go into one buffer as they arrive. Everything before `held` is
/// output for sure; from `held` on is a tail that could still be the start
/// of the marker (it begins with `\n`), kept until more bytes tell. Past the
/// cap, output is dropped from the middle (the tail stays), so memory stays
/// at the cap plus one read. Newlines are found with `memchr`: a megabyte of
/// output is scanned at memory speed, and copied once.
struct Capture {
    buf: Vec<u8>,
    held: usize,
    cap: usize,
    truncated: bool,
    marker: Vec<u8>,
    found: Option<i64>,
    /// Bytes after the marker (a background process's), for the next cell.
    after: Vec<u8>,
}

impl Capture {
    fn new(token: &str, cap: usize, carry: Vec<u8>) -> Capture {
        let mut c = Capture {
            buf: Vec::new(),
            held: 0,
            cap,
            truncated: false,
            marker: format!("\n{token} ").into_bytes(),
            found: None,
            after: Vec::new(),
        };
        c.feed(&carry);
        c
    }

    fn feed(&mut self, data: &[u8]) {
        if self.found.is_some() {
            self.after.extend_from_slice(data);
            return;
        }
        self.buf.extend_from_slice(data);
        self.scan();
        if self.held > self.cap {
            self.truncated = true;
            self.buf.drain(self.cap..self.held);
            self.held = self.cap;
        }
    }

    /// Moves `held` over everything that cannot be the marker, and takes the
    /// marker out when it is complete.
    fn scan(&mut self) {
        let m = self.marker.len();
        let mut from = self.held;
        loop {
            let Some(pos) = self
                .buf
                .get(from..)
                .and_then(|rest| memchr::memchr(b'\n', rest))
                .map(|i| from + i)
            else {
                // No newline left that could start the marker.
                self.held = self.buf.len();
                return;
            };
            let rest = self.buf.get(pos..).unwrap_or_default();
            if rest.len() < m {
                if self.marker.starts_with(rest) {
                    // Might be the marker's beginning: wait for more.
                    self.held = pos;
                    return;
                }
            } else if rest.starts_with(&self.marker) {
                let tail = rest.get(m..).unwrap_or_default();
                let Some(nl) = memchr::memchr(b'\n', tail) else {
                    self.held = pos;
                    return;
                };
                let num = std::str::from_utf8(tail.get(..nl).unwrap_or_default())
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .unwrap_or(-1);
                self.after = tail.get(nl + 1..).unwrap_or_default().to_vec();
                self.buf.truncate(pos);
                self.held = pos;
                self.found = Some(num);
                return;
            }
            from = pos + 1;
        }
    }

    /// The output before the marker.
    fn take(self) -> (Vec<u8>, bool, Vec<u8>) {
        (self.buf, self.truncated, self.after)
    }

    /// Everything, marker or not (the interpreter died).
    fn finish(mut self) -> (Vec<u8>, bool) {
        if self.buf.len() > self.cap {
            self.truncated = true;
            self.buf.truncate(self.cap);
        }
        (self.buf, self.truncated)
    }
}

pub(crate) struct Server {
    conn: Conn,
    interp: Option<Interp>,
    /// Output that arrived between exchanges.
    carry: [Vec<u8>; 2],
    carry_truncated: bool,
    /// Requests read but not served yet (RUNs that arrive while a cell runs,
    /// which only happens without a supervisor: it queues them itself).
    inbox: VecDeque<Incoming>,
    /// SIGINT was forwarded during the current cell.
    pub(crate) interrupted: bool,
    /// The interpreter's program name, for messages.
    pub(crate) name: String,
    pub(crate) config: StdioConfig,
}

/// A random token for one exchange.
pub(crate) fn new_token() -> String {
    format!("__evaler_{:032x}", rand::random::<u128>())
}

pub(crate) fn describe_status(name: &str, st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(code), _) => format!("{name} exited with status {code}"),
        (None, Some(sig)) => format!(
            "{name} was killed by signal {sig} ({})",
            evaler_sandbox::signal_name(sig)
        ),
        _ => format!("{name} ended ({st})"),
    }
}

/// How a cell ended, as the dialects report it.
pub(crate) enum CellEnd {
    /// A RESULT to send.
    Result(RunResult),
    /// The interpreter died; the session is over.
    Died {
        status: ExitStatus,
        out: Vec<u8>,
        err: Vec<u8>,
        truncated: bool,
        elapsed: Duration,
    },
    Stop(Stop),
}

impl Server {
    fn main(&mut self) -> io::Result<i32> {
        let code = match self.start() {
            Ok(()) => self.serve_loop(),
            Err(Stop::Died { status, .. }) => {
                let msg = format!(
                    "{} could not start: {}",
                    self.name,
                    describe_status(&self.name, status)
                );
                self.die_idle(msg)
            }
            Err(Stop::Io(e)) => {
                let msg = format!("{} could not start: {e}", self.name);
                self.die_idle(msg)
            }
            Err(Stop::TimedOut) => {
                let msg = format!(
                    "{} did not start within {} s",
                    self.name,
                    self.config.start_timeout.as_secs()
                );
                self.die_idle(msg)
            }
            Err(Stop::Killed | Stop::ClientGone) => Ok(0),
        };
        if let Some(i) = &mut self.interp {
            i.kill();
        }
        code
    }

    fn start(&mut self) -> Result<(), Stop> {
        let interp = Interp::spawn(&self.config.command).map_err(Stop::Io)?;
        self.interp = Some(interp);
        let deadline = Instant::now() + self.config.start_timeout;
        match self.config.dialect {
            Dialect::Bash | Dialect::Zsh => shell::init(self, deadline),
            Dialect::Cpp => cpp::init(self, deadline),
        }
    }

    /// The interpreter is gone while no cell runs: tell the supervisor and
    /// end.
    fn die_idle(&mut self, value: String) -> io::Result<i32> {
        tracing::warn!("{value}");
        let _ = self
            .conn
            .send(&SessionReply::ConnectionError(ConnectionError {
                value: Some(value),
            }));
        Ok(0)
    }

    fn serve_loop(&mut self) -> io::Result<i32> {
        loop {
            let req = match self.next_request() {
                Ok(Some(Ok(r))) => r,
                Ok(Some(Err(e))) => {
                    self.conn.send(&SessionReply::from(&e))?;
                    continue;
                }
                Ok(None) => return Ok(0),
                Err(msg) => return self.die_idle(msg),
            };
            match req {
                SessionRequest::Ping => self.conn.send(&SessionReply::ConnectionOk)?,
                SessionRequest::Interrupt => {}
                SessionRequest::Kill => return Ok(0),
                SessionRequest::Run(_) | SessionRequest::RunAndKill(_) => {
                    let (run, and_kill) = match req {
                        SessionRequest::RunAndKill(run) => (run, true),
                        SessionRequest::Run(run) => (run, false),
                        _ => continue,
                    };
                    let _ = run.timeout; // enforced by the supervisor
                    self.interrupted = false;
                    let started = Instant::now();
                    let end = match self.config.dialect {
                        Dialect::Bash | Dialect::Zsh => shell::run_cell(self, &run.code),
                        Dialect::Cpp => cpp::run_cell(self, &run.code),
                    };
                    match end {
                        CellEnd::Result(mut r) => {
                            r.time.get_or_insert(started.elapsed().as_secs_f64());
                            self.conn.send_result(r)?;
                            if and_kill {
                                return Ok(0);
                            }
                        }
                        CellEnd::Died {
                            status,
                            out,
                            err,
                            truncated,
                            elapsed,
                        } => {
                            self.report_death(status, out, err, truncated, elapsed)?;
                            return Ok(0);
                        }
                        CellEnd::Stop(Stop::Killed | Stop::ClientGone) => return Ok(0),
                        CellEnd::Stop(Stop::Died { status, out, err }) => {
                            self.report_death(status, out, err, false, started.elapsed())?;
                            return Ok(0);
                        }
                        CellEnd::Stop(Stop::TimedOut) => {
                            return self.die_idle(format!("{} stopped answering", self.name))
                        }
                        CellEnd::Stop(Stop::Io(e)) => {
                            return self.die_idle(format!("lost {}: {e}", self.name))
                        }
                    }
                }
            }
        }
    }

    /// A cell ended with the interpreter: `exit N` is a RESULT with status
    /// `exited`; death by a signal is CONNECTION-ERROR.
    fn report_death(
        &mut self,
        status: ExitStatus,
        out: Vec<u8>,
        err: Vec<u8>,
        truncated: bool,
        elapsed: Duration,
    ) -> io::Result<()> {
        match status.code() {
            Some(code) => self.conn.send_result(RunResult {
                stdout: output_into_string(out),
                stderr: output_into_string(err),
                status: Some(RunStatus::Exited),
                value: None,
                time: Some(elapsed.as_secs_f64()),
                exit_code: Some(i64::from(code)),
                truncated: truncated.then_some(true),
            }),
            None => self
                .conn
                .send(&SessionReply::ConnectionError(ConnectionError {
                    value: Some(describe_status(&self.name, status)),
                })),
        }
    }

    /// Waits for the next request while idle, keeping background output and
    /// watching for the interpreter's death. `Ok(None)`: the connection
    /// ended. `Err`: the interpreter died (the message says how).
    fn next_request(&mut self) -> Result<Option<Incoming>, String> {
        loop {
            if let Some(p) = self.inbox.pop_front() {
                return Ok(Some(p));
            }
            let got = self.conn.read_available();
            if !got.is_empty() {
                self.inbox.extend(got);
                continue;
            }
            if self.conn.eof {
                return Ok(None);
            }
            let Some(interp) = self.interp.as_mut() else {
                return Ok(None);
            };
            if let Some(st) = interp.check_exit() {
                return Err(describe_status(&self.name, st));
            }
            let mut ready = [false; 3];
            {
                let mut fds = vec![PollFd::new(self.conn.sock.as_fd(), PollFlags::POLLIN)];
                let mut idx = [usize::MAX; 3];
                if let Some(o) = &interp.stdout {
                    idx[1] = fds.len();
                    fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
                }
                if let Some(e) = &interp.stderr {
                    idx[2] = fds.len();
                    fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
                }
                let timeout = PollTimeout::try_from(IDLE_TICK).unwrap_or(PollTimeout::NONE);
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(format!("poll: {e}")),
                }
                for (k, &i) in idx.iter().enumerate().skip(1) {
                    if i != usize::MAX {
                        ready[k] = fds[i].revents().is_some_and(|r| !r.is_empty());
                    }
                }
            }
            let cap = self.config.output_cap;
            for (k, slot) in [(1usize, 0usize), (2, 1)] {
                if ready[k] {
                    let interp = self.interp.as_mut().ok_or("no interpreter")?;
                    let mut buf = [0u8; 65536];
                    let pipe: Option<&mut dyn Read> = if k == 1 {
                        interp.stdout.as_mut().map(|p| p as &mut dyn Read)
                    } else {
                        interp.stderr.as_mut().map(|p| p as &mut dyn Read)
                    };
                    if let Some(pipe) = pipe {
                        match pipe.read(&mut buf) {
                            Ok(0) => {
                                if k == 1 {
                                    interp.stdout = None;
                                } else {
                                    interp.stderr = None;
                                }
                            }
                            Ok(n) => {
                                let room = cap.saturating_sub(self.carry[slot].len());
                                if n > room {
                                    self.carry_truncated = true;
                                }
                                self.carry[slot].extend_from_slice(&buf[..n.min(room)]);
                            }
                            Err(_) => {}
                        }
                    }
                }
            }
        }
    }

    /// Forwards an interrupt to the interpreter's process group.
    fn interrupt(&mut self) {
        if let Some(i) = &self.interp {
            i.signal(Signal::SIGINT);
        }
        self.interrupted = true;
    }

    /// Writes `input`, then collects stdout and stderr until both carry the
    /// marker of `token`. While it waits it answers PING, takes INTERRUPT,
    /// and ends at once on KILL or when the interpreter dies.
    /// `resend` is written again `RESEND_AFTER` an interrupt if the marker
    /// has not come.
    pub(crate) fn exchange(
        &mut self,
        input: &[u8],
        token: &str,
        resend: Option<&[u8]>,
        deadline: Option<Instant>,
    ) -> Result<Exchange, Stop> {
        let cap = self.config.output_cap;
        let carry_out = std::mem::take(&mut self.carry[0]);
        let carry_err = std::mem::take(&mut self.carry[1]);
        let mut caps = [
            Capture::new(token, cap, carry_out),
            Capture::new(token, cap, carry_err),
        ];
        if std::mem::take(&mut self.carry_truncated) {
            caps[0].truncated = true;
        }
        let mut pending: Vec<u8> = input.to_vec();
        let mut written = 0usize;
        let mut resend_at: Option<Instant> = None;
        let mut was_interrupted = self.interrupted;
        let mut reads = ReadBuf::new();
        loop {
            if caps[0].found.is_some() && caps[1].found.is_some() {
                let [out, err] = caps;
                let code = out.found.unwrap_or(-1);
                let (out, out_cut, out_after) = out.take();
                let (err, err_cut, err_after) = err.take();
                self.carry = [out_after, err_after];
                return Ok(Exchange {
                    code,
                    truncated: out_cut || err_cut,
                    out,
                    err,
                });
            }
            if self.interrupted && !was_interrupted {
                was_interrupted = true;
                if resend.is_some() {
                    resend_at = Some(Instant::now() + RESEND_AFTER);
                }
            }
            if let Some(at) = resend_at {
                if Instant::now() >= at {
                    resend_at = None;
                    if let Some(r) = resend {
                        pending.extend_from_slice(r);
                    }
                }
            }
            let Some(interp) = self.interp.as_mut() else {
                return Err(Stop::ClientGone);
            };
            if let Some(status) = interp.check_exit() {
                // Whatever is already in the pipes, then the end.
                for (k, c) in caps.iter_mut().enumerate() {
                    let pipe: Option<&mut dyn Read> = if k == 0 {
                        interp.stdout.as_mut().map(|p| p as &mut dyn Read)
                    } else {
                        interp.stderr.as_mut().map(|p| p as &mut dyn Read)
                    };
                    if let Some(pipe) = pipe {
                        while let Ok(Some(data)) = reads.read(pipe) {
                            c.feed(data);
                        }
                    }
                }
                let [out, err] = caps;
                let (out, _) = out.finish();
                let (err, _) = err.finish();
                return Err(Stop::Died { status, out, err });
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Stop::TimedOut);
            }
            let mut wake = deadline;
            if let Some(at) = resend_at {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
            let tick = now + TICK;
            wake = Some(wake.map_or(tick, |w| w.min(tick)));
            let timeout = match wake {
                None => PollTimeout::NONE,
                Some(w) => {
                    let ms = w
                        .saturating_duration_since(now)
                        .as_millis()
                        .clamp(1, 60_000);
                    PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::NONE)
                }
            };
            // [sock, stdout, stderr, stdin]
            let mut ready = [PollFlags::empty(); 4];
            {
                let mut fds = Vec::with_capacity(4);
                let mut idx = [usize::MAX; 4];
                if !self.conn.eof {
                    idx[0] = fds.len();
                    fds.push(PollFd::new(self.conn.sock.as_fd(), PollFlags::POLLIN));
                }
                if let Some(o) = &interp.stdout {
                    idx[1] = fds.len();
                    fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
                }
                if let Some(e) = &interp.stderr {
                    idx[2] = fds.len();
                    fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
                }
                if written < pending.len() {
                    if let Some(i) = &interp.stdin {
                        idx[3] = fds.len();
                        fds.push(PollFd::new(i.as_fd(), PollFlags::POLLOUT));
                    }
                }
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(Stop::Io(e.into())),
                }
                for (k, &i) in idx.iter().enumerate() {
                    if i != usize::MAX {
                        ready[k] = fds[i].revents().unwrap_or(PollFlags::empty());
                    }
                }
            }
            if !ready[0].is_empty() {
                for item in self.conn.read_available() {
                    match item {
                        Ok(SessionRequest::Ping) => self
                            .conn
                            .send(&SessionReply::ConnectionOk)
                            .map_err(Stop::Io)?,
                        Ok(SessionRequest::Interrupt) => self.interrupt(),
                        Ok(SessionRequest::Kill) => return Err(Stop::Killed),
                        Ok(run) => self.inbox.push_back(Ok(run)),
                        Err(e) => self.conn.send(&SessionReply::from(&e)).map_err(Stop::Io)?,
                    }
                }
                if self.conn.eof {
                    return Err(Stop::ClientGone);
                }
            }
            let Some(interp) = self.interp.as_mut() else {
                return Err(Stop::ClientGone);
            };
            if !ready[3].is_empty() {
                if let Some(stdin) = &mut interp.stdin {
                    match stdin.write(&pending[written..]) {
                        Ok(n) => written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        // The interpreter is going away; its exit is seen next.
                        Err(_) => written = pending.len(),
                    }
                    if written == pending.len() {
                        pending.clear();
                        written = 0;
                    }
                }
            }
            for (k, c) in caps.iter_mut().enumerate() {
                if ready[k + 1].is_empty() {
                    continue;
                }
                let pipe = if k == 0 {
                    interp.stdout.as_mut().map(|p| p as &mut dyn Read)
                } else {
                    interp.stderr.as_mut().map(|p| p as &mut dyn Read)
                };
                let Some(pipe) = pipe else { continue };
                match reads.read(pipe) {
                    Ok(None) => {
                        if k == 0 {
                            interp.stdout = None;
                        } else {
                            interp.stderr = None;
                        }
                    }
                    Ok(Some(data)) => c.feed(data),
                    Err(_) => {}
                }
            }
        }
    }
}

/// Where the pipes are read into: a page on the stack for the usual small
/// outputs, and, once a read fills that page, a larger buffer for the rest
/// of the exchange (big outputs, in fewer and larger reads; not kept: an
/// idle server holds no big buffer).
struct ReadBuf {
    small: [u8; 4096],
    big: Vec<u8>,
    grow: bool,
}

impl ReadBuf {
    fn new() -> ReadBuf {
        ReadBuf {
            small: [0; 4096],
            big: Vec::new(),
            grow: false,
        }
    }

    /// One read: `None` at end of file, or the bytes read.
    fn read(&mut self, pipe: &mut dyn Read) -> io::Result<Option<&[u8]>> {
        if self.grow && self.big.is_empty() {
            self.big = vec![0; 1 << 18];
        }
        let buf: &mut [u8] = if self.big.is_empty() {
            &mut self.small
        } else {
            &mut self.big
        };
        let n = pipe.read(buf)?;
        self.grow |= n == buf.len();
        Ok((n > 0).then(|| buf.get(..n).unwrap_or_default()))
    }
}

/// A RESULT from parts.
pub(crate) fn result(
    out: Vec<u8>,
    err: Vec<u8>,
    status: RunStatus,
    truncated: bool,
    elapsed: Duration,
) -> RunResult {
    RunResult {
        stdout: output_into_string(out),
        stderr: output_into_string(err),
        status: Some(status),
        value: None,
        time: Some(elapsed.as_secs_f64()),
        exit_code: None,
        truncated: truncated.then_some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::Capture;

    fn feed_all(c: &mut Capture, parts: &[&[u8]]) {
        for p in parts {
            c.feed(p);
        }
    }

    #[test]
    fn marker_split_across_reads() {
        let mut c = Capture::new("TOK", 1 << 20, Vec::new());
        feed_all(&mut c, &[b"hello", b"\nTO", b"K 0", b"\nlater"]);
        assert_eq!(c.found, Some(0));
        assert_eq!(c.take(), (b"hello".to_vec(), false, b"later".to_vec()));
    }

    #[test]
    fn lookalike_text_is_output() {
        let mut c = Capture::new("TOK", 1 << 20, Vec::new());
        feed_all(&mut c, &[b"a\nTOKEN 1\n\nTO 3\n", b"\nTOK 7\n"]);
        assert_eq!(c.found, Some(7));
        assert_eq!(c.take().0, b"a\nTOKEN 1\n\nTO 3\n");
    }

    #[test]
    fn cap_keeps_looking_for_the_marker() {
        let mut c = Capture::new("TOK", 10, Vec::new());
        let big = vec![b'x'; 100_000];
        c.feed(&big);
        c.feed(b"\nTOK 2\n");
        assert_eq!(c.found, Some(2));
        let (out, truncated, _) = c.take();
        assert_eq!(out.len(), 10);
        assert!(truncated);
    }

    #[test]
    fn cap_keeps_a_possible_marker_start() {
        let mut c = Capture::new("TOK", 4, Vec::new());
        feed_all(&mut c, &[b"abcdefgh\nT", b"O", b"K 5\n"]);
        assert_eq!(c.found, Some(5));
        assert_eq!(c.take(), (b"abcd".to_vec(), true, Vec::new()));
    }

    #[test]
    fn every_split_of_a_stream_gives_the_same_capture() {
        let stream: &[u8] = b"x\n\nTOKEN\n\nTO\nTOK\n\nTOK 12\nbackground";
        for cap in [3, 8, 1 << 20] {
            let mut whole = Capture::new("TOK", cap, Vec::new());
            whole.feed(stream);
            let expected = whole.take();
            let output = b"x\n\nTOKEN\n\nTO\nTOK\n";
            assert_eq!(expected.0, output[..output.len().min(cap)]);
            assert_eq!(expected.2, b"background");
            for a in 0..stream.len() {
                for b in a..stream.len() {
                    let mut c = Capture::new("TOK", cap, Vec::new());
                    feed_all(&mut c, &[&stream[..a], &stream[a..b], &stream[b..]]);
                    assert_eq!(c.found, Some(12));
                    assert_eq!(c.take(), expected, "split at {a}, {b}, cap {cap}");
                }
            }
        }
    }

    #[test]
    fn died_without_marker_keeps_everything_up_to_the_cap() {
        let mut c = Capture::new("TOK", 5, Vec::new());
        feed_all(&mut c, &[b"abc\nT", b"OK"]);
        assert_eq!(c.finish(), (b"abc\nT".to_vec(), true));
    }
}
