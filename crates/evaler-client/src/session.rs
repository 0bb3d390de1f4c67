//! Interactive sessions: one sandboxed interpreter per [`Session`], as a
//! notebook kernel.
//!
//! [`Session::start`] runs `evaler kernel --lang L --listen 127.0.0.1:0
//! --exit-with-stdin` (the binary from [`SessionOptions::evaler`],
//! `$EVALER_BIN`, or `evaler` on `PATH`), reads the address it prints, and
//! connects. evaler needs root for its sandbox: run the host as root, or
//! install evaler setuid-root; the host itself needs no privileges.
//!
//! ```no_run
//! # async fn demo() -> Result<(), evaler_client::session::SessionError> {
//! use evaler_client::session::{Session, SessionOptions};
//! use std::time::Duration;
//!
//! let s = Session::start("python", SessionOptions::default()).await?;
//! s.run("x = 21").await?;
//! let r = s.run("x * 2").await?;
//! assert_eq!(r.value.as_deref(), Some("42"));
//! let r = s.run_with_timeout("import time; time.sleep(10)", Duration::from_secs(1)).await?;
//! assert_eq!(r.status, Some(evaler_proto::RunStatus::Timeout));
//! s.kill().await?;
//! # Ok(()) }
//! ```
//!
//! The kernel is never trusted: packets are size-capped by the codec, every
//! wait has a deadline, and malformed packets are errors, not panics.
//!
//! **Health.** While no reply is awaited the session PINGs the kernel every
//! [`SessionOptions::ping_interval`]; a missing answer, a closed socket, the
//! kernel's exit or `CONNECTION-ERROR` marks it [`SessionStatus::Dead`] (see
//! [`Session::subscribe`]); [`Session::restart`] brings up a fresh one.
//!
//! **Lifetime.** A session never outlives its host: the kernel's stdin is a
//! pipe from this process and it ends its sandbox when the pipe closes (the
//! host died), and dropping a `Session` ends the kernel. [`Session::kill`]
//! sends KILL and closes that pipe, waits up to
//! [`SessionOptions::kill_grace`] for the kernel to exit, and otherwise lets
//! it finish removing its sandbox in the background (killing it if it has
//! not exited 5 s later).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evaler_proto::{
    Run, RunResult, RunStatus, SessionClientCodec, SessionReply, SessionRequest, DEFAULT_MAX_PACKET,
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

/// Environment variable naming the evaler binary.
pub const EVALER_BIN_ENV: &str = "EVALER_BIN";

/// How sessions are started and watched.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The evaler binary; `None`: `$EVALER_BIN`, else `evaler` on `PATH`.
    pub evaler: Option<PathBuf>,
    /// Memory limit of the whole session, KiB; `None`: the kernel's default.
    pub memory_kib: Option<u64>,
    /// Processes and threads alive at once; `None`: the kernel's default.
    pub processes: Option<u64>,
    /// Time limit of each cell run with [`Session::run`] or
    /// [`Session::run_and_kill`] (sent as the RUN's `timeout`, so the kernel
    /// stops the cell then, as [`Session::run_with_timeout`] does); `None`:
    /// cells run until they end or are interrupted.
    pub cell_timeout: Option<Duration>,
    /// How long the kernel may take to print its address.
    pub start_timeout: Duration,
    /// PING period while idle; `None`: no health checks.
    pub ping_interval: Option<Duration>,
    /// How long a PING may go unanswered.
    pub ping_timeout: Duration,
    /// How long [`Session::kill`] waits for the kernel to exit after KILL.
    /// A kernel still there is left to finish removing its sandbox in the
    /// background, and killed if it has not exited 5 s later.
    pub kill_grace: Duration,
    /// For RUNs with a timeout: how long after it the RESULT may still come
    /// before the session is declared dead (the kernel itself stops cells
    /// at the timeout, and ends the session ~100 ms later if it must).
    pub timeout_slack: Duration,
    /// Packet size limit.
    pub max_packet: usize,
    /// More arguments for `evaler kernel` (e.g. `--kernels FILE`).
    pub extra_args: Vec<String>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            evaler: None,
            memory_kib: None,
            processes: None,
            cell_timeout: None,
            start_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(5)),
            ping_timeout: Duration::from_secs(3),
            kill_grace: Duration::from_millis(100),
            timeout_slack: Duration::from_secs(2),
            max_packet: DEFAULT_MAX_PACKET,
            extra_args: Vec::new(),
        }
    }
}

/// What the host can observe of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatus {
    /// A kernel is being started ([`Session::restart`]).
    Starting,
    /// Alive, no cell running.
    Idle,
    /// Alive, running (or queueing) cells.
    Busy,
    /// Over; the reason. Every call now fails with [`SessionError::Dead`].
    Dead(String),
}

impl SessionStatus {
    pub fn is_dead(&self) -> bool {
        matches!(self, SessionStatus::Dead(_))
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The kernel could not be started.
    #[error("cannot start the session: {0}")]
    Start(String),
    /// The session is over (crash, exit, KILL, lost kernel); the reason.
    #[error("the session is dead: {0}")]
    Dead(String),
    /// The kernel answered something that makes no sense here.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The kernel rejected a request (`Error` packet).
    #[error("rejected by the kernel: {0}")]
    Rejected(String),
    /// A bad argument (e.g. a negative timeout).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

type Reply<T> = oneshot::Sender<Result<T, SessionError>>;

enum Cmd {
    Run {
        run: Run,
        and_kill: bool,
        reply: Reply<RunResult>,
    },
    Ping {
        reply: Reply<Duration>,
    },
    Interrupt,
    Kill {
        reply: oneshot::Sender<()>,
    },
}

struct Inner {
    cmds: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<()>,
    addr: SocketAddr,
    pid: Option<u32>,
}

/// One interactive session. Calls may be made concurrently from several
/// tasks: RUNs are answered in the order they were sent.
pub struct Session {
    lang: String,
    opts: SessionOptions,
    inner: Inner,
    status: Arc<watch::Sender<SessionStatus>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("lang", &self.lang)
            .field("addr", &self.inner.addr)
            .field("pid", &self.inner.pid)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

fn dead_reason(status: &watch::Sender<SessionStatus>) -> String {
    match &*status.borrow() {
        SessionStatus::Dead(r) => r.clone(),
        _ => "the session ended".into(),
    }
}

impl Session {
    /// Starts a session of `lang` (a kernel name of `kernels.toml`:
    /// python, ruby, bash, zsh, cpp, or an alias).
    pub async fn start(lang: &str, opts: SessionOptions) -> Result<Session, SessionError> {
        let status = Arc::new(watch::Sender::new(SessionStatus::Starting));
        let inner = spawn_kernel(lang, &opts, Arc::clone(&status)).await?;
        Ok(Session {
            lang: lang.to_string(),
            opts,
            inner,
            status,
        })
    }

    /// The language this session was started with.
    pub fn lang(&self) -> &str {
        &self.lang
    }

    /// The kernel's TCP address.
    pub fn address(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The pid of the `evaler kernel` process.
    pub fn kernel_pid(&self) -> Option<u32> {
        self.inner.pid
    }

    /// The current status.
    pub fn status(&self) -> SessionStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (also across restarts).
    pub fn subscribe(&self) -> watch::Receiver<SessionStatus> {
        self.status.subscribe()
    }

    fn send(&self, cmd: Cmd) -> Result<(), SessionError> {
        self.inner
            .cmds
            .send(cmd)
            .map_err(|_| SessionError::Dead(dead_reason(&self.status)))
    }

    async fn run_inner(
        &self,
        code: &str,
        timeout: Option<Duration>,
        and_kill: bool,
    ) -> Result<RunResult, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Run {
            run: Run {
                code: code.to_string(),
                timeout: timeout.map(|t| t.as_secs_f64()),
            },
            and_kill,
            reply: tx,
        })?;
        rx.await
            .unwrap_or_else(|_| Err(SessionError::Dead(dead_reason(&self.status))))
    }

    /// Runs a cell and returns its RESULT (whatever its status: `error`,
    /// `exited`...), within [`SessionOptions::cell_timeout`] if set. Errors
    /// only when no RESULT can come.
    pub async fn run(&self, code: &str) -> Result<RunResult, SessionError> {
        self.run_inner(code, self.cell_timeout(), false).await
    }

    fn cell_timeout(&self) -> Option<Duration> {
        self.opts.cell_timeout.filter(|t| !t.is_zero())
    }

    /// Runs a cell with a time limit: the kernel interrupts it at the
    /// deadline (status `timeout`, the session lives on) or, if it does not
    /// stop within ~100 ms, ends the session (status `crashed`).
    pub async fn run_with_timeout(
        &self,
        code: &str,
        timeout: Duration,
    ) -> Result<RunResult, SessionError> {
        if timeout.is_zero() {
            return Err(SessionError::Invalid("the timeout must be positive".into()));
        }
        self.run_inner(code, Some(timeout), false).await
    }

    /// Runs a cell (within [`SessionOptions::cell_timeout`] if set), then
    /// ends the session.
    pub async fn run_and_kill(&self, code: &str) -> Result<RunResult, SessionError> {
        self.run_inner(code, self.cell_timeout(), true).await
    }

    /// Interrupts the running cell (Ctrl-C); its RESULT gets status
    /// `interrupted` and the state is kept. Nothing happens when idle.
    pub async fn interrupt(&self) -> Result<(), SessionError> {
        self.send(Cmd::Interrupt)
    }

    /// Health check: the round trip of a PING. `Err(Dead)` when the kernel
    /// says the interpreter is gone.
    pub async fn ping(&self) -> Result<Duration, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Ping { reply: tx })?;
        rx.await
            .unwrap_or_else(|_| Err(SessionError::Dead(dead_reason(&self.status))))
    }

    /// Ends the session now: KILL, then the kernel process is killed if it
    /// has not exited within the kill grace. Pending RUNs fail with
    /// `Dead`. Idempotent.
    pub async fn kill(&self) -> Result<(), SessionError> {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmds.send(Cmd::Kill { reply: tx }).is_ok() {
            let _ = rx.await;
        }
        Ok(())
    }

    /// Kills this session (if alive) and starts a fresh one with the same
    /// language and options.
    pub async fn restart(&mut self) -> Result<(), SessionError> {
        self.kill().await?;
        self.status.send_replace(SessionStatus::Starting);
        let inner = spawn_kernel(&self.lang, &self.opts, Arc::clone(&self.status)).await?;
        let old = std::mem::replace(&mut self.inner, inner);
        old.task.abort();
        Ok(())
    }
}

fn evaler_binary(opts: &SessionOptions) -> PathBuf {
    if let Some(p) = &opts.evaler {
        return p.clone();
    }
    match std::env::var_os(EVALER_BIN_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("evaler"),
    }
}

/// The last lines the kernel wrote to stderr, for error messages.
#[derive(Default)]
struct StderrTail(Mutex<VecDeque<String>>);

impl StderrTail {
    fn push(&self, line: String) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() == 8 {
                q.pop_front();
            }
            q.push_back(line);
        }
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .map(|q| q.iter().cloned().collect::<Vec<_>>().join("; "))
            .unwrap_or_default()
    }
}

async fn spawn_kernel(
    lang: &str,
    opts: &SessionOptions,
    status: Arc<watch::Sender<SessionStatus>>,
) -> Result<Inner, SessionError> {
    let bin = evaler_binary(opts);
    let mut cmd = Command::new(&bin);
    cmd.arg("kernel")
        .arg("--lang")
        .arg(lang)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--exit-with-stdin");
    if let Some(m) = opts.memory_kib {
        cmd.arg("--memory").arg(m.to_string());
    }
    if let Some(p) = opts.processes {
        cmd.arg("--processes").arg(p.to_string());
    }
    // Its own process group: a Ctrl-C at the host's terminal goes to the
    // host, which decides (an INTERRUPT, say), not straight to the kernel.
    cmd.process_group(0);
    cmd.args(&opts.extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Not killed on drop: a kernel told to stop (KILL, or its stdin
        // closing) removes its sandbox, cgroups included, before it exits;
        // a SIGKILL in the middle would leave them to the next start's sweep.
        .kill_on_drop(false);
    let mut child = cmd
        .spawn()
        .map_err(|e| SessionError::Start(format!("cannot run {}: {e}", bin.display())))?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let tail = Arc::new(StderrTail::default());
    if let Some(stderr) = child.stderr.take() {
        let tail = Arc::clone(&tail);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "evaler_client::kernel", "{line}");
                tail.push(line);
            }
        });
    }
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| SessionError::Start("no stdout".into()))?;
    // The first line is the address; never read more than a line's worth.
    let mut first = String::new();
    let read = tokio::time::timeout(opts.start_timeout, async {
        BufReader::new(stdout.take(256)).read_line(&mut first).await
    })
    .await;
    let fail = |what: String, child: &mut Child, tail: &StderrTail| {
        let _ = child.start_kill();
        let detail = tail.text();
        SessionError::Start(if detail.is_empty() {
            what
        } else {
            format!("{what}: {detail}")
        })
    };
    match read {
        Err(_) => {
            return Err(fail(
                format!(
                    "the kernel printed no address within {:?}",
                    opts.start_timeout
                ),
                &mut child,
                &tail,
            ))
        }
        Ok(Err(e)) => return Err(fail(format!("reading the kernel: {e}"), &mut child, &tail)),
        Ok(Ok(0)) => {
            // Exited: give its stderr a moment to arrive.
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(fail("the kernel exited".into(), &mut child, &tail));
        }
        Ok(Ok(_)) => {}
    }
    let addr: SocketAddr = first.trim().parse().map_err(|_| {
        SessionError::Start(format!(
            "the kernel printed {:?}, not an address",
            first.trim()
        ))
    })?;
    let stream = tokio::time::timeout(opts.start_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| SessionError::Start(format!("connecting to {addr} timed out")))?
        .map_err(|e| SessionError::Start(format!("cannot connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let framed = Framed::new(stream, SessionClientCodec::with_max_packet(opts.max_packet));
    let (tx, rx) = mpsc::unbounded_channel();
    status.send_replace(SessionStatus::Idle);
    let actor = Actor {
        framed: Some(framed),
        child: Some(child),
        _stdin: stdin,
        cmds: rx,
        runs: VecDeque::new(),
        pings: VecDeque::new(),
        status,
        opts: opts.clone(),
        last_activity: Instant::now(),
        dead: None,
        tail,
        shrink_at: None,
    };
    let task = tokio::spawn(actor.run());
    Ok(Inner {
        cmds: tx,
        task,
        addr,
        pid,
    })
}

struct PendingRun {
    reply: Option<Reply<RunResult>>,
    /// When the kernel must have answered (timeout + slack), counted from
    /// when the RUN before it was answered.
    timeout: Option<Duration>,
    and_kill: bool,
}

struct PendingPing {
    reply: Option<Reply<Duration>>,
    sent: Instant,
}

/// Owns the connection and the kernel process.
struct Actor {
    framed: Option<Framed<TcpStream, SessionClientCodec>>,
    /// `None` once it has exited or been handed to the reaper (see
    /// [`Actor::end_kernel`]).
    child: Option<Child>,
    /// Never written: closing it (this process died) ends the kernel.
    _stdin: Option<ChildStdin>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    runs: VecDeque<PendingRun>,
    pings: VecDeque<PendingPing>,
    status: Arc<watch::Sender<SessionStatus>>,
    opts: SessionOptions,
    /// Last packet sent or received; idle PINGs count from here.
    last_activity: Instant,
    dead: Option<String>,
    tail: Arc<StderrTail>,
    /// After a big packet: when to give the connection buffers' memory
    /// back, if no RUN is pending by then (see [`SHRINK_AFTER`]).
    shrink_at: Option<Instant>,
}

/// Connection buffers above this capacity are worth giving back.
const BIG_BUFFER: usize = 64 * 1024;

/// How long a session must be idle after a big packet before its buffers
/// shrink: back-to-back big cells reuse theirs, an idle session holds no
/// megabytes for a RESULT long gone.
const SHRINK_AFTER: Duration = Duration::from_secs(1);

/// How long a kernel that outlived [`SessionOptions::kill_grace`] gets to
/// exit by itself before it is killed.
const REAP_AFTER: Duration = Duration::from_secs(5);

enum Ev {
    Cmd(Option<Cmd>),
    Packet(
        Option<Result<Result<SessionReply, evaler_proto::DecodeError>, evaler_proto::StreamError>>,
    ),
    ChildExited(std::io::Result<std::process::ExitStatus>),
    Timer,
}

impl Actor {
    fn busy_status(&self) -> SessionStatus {
        if self.runs.is_empty() {
            SessionStatus::Idle
        } else {
            SessionStatus::Busy
        }
    }

    fn set_status(&self) {
        if self.dead.is_none() {
            let s = self.busy_status();
            self.status.send_if_modified(|cur| {
                if *cur != s {
                    *cur = s;
                    true
                } else {
                    false
                }
            });
        }
    }

    /// The next moment something must be checked: an idle PING, a PING's
    /// deadline, the front RUN's deadline.
    fn next_timer(&self, run_started: Option<Instant>) -> Option<Instant> {
        if self.dead.is_some() {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut add = |x: Instant| t = Some(t.map_or(x, |t: Instant| t.min(x)));
        if let Some(p) = self.pings.front() {
            add(p.sent + self.opts.ping_timeout);
        } else if self.runs.is_empty() {
            if let Some(i) = self.opts.ping_interval {
                add(self.last_activity + i);
            }
        }
        if let (Some(r), Some(start)) = (self.runs.front(), run_started) {
            if let Some(to) = r.timeout {
                add(start + to + self.opts.timeout_slack);
            }
        }
        if let Some(at) = self.shrink_at {
            add(at);
        }
        t
    }

    /// Schedules or does the shrinking of the connection buffers (see
    /// [`SHRINK_AFTER`]).
    fn shrink_buffers(&mut self, now: Instant) {
        let Some(f) = &mut self.framed else {
            self.shrink_at = None;
            return;
        };
        let big =
            f.read_buffer().capacity() > BIG_BUFFER || f.write_buffer().capacity() > BIG_BUFFER;
        match self.shrink_at {
            _ if !big => self.shrink_at = None,
            None => self.shrink_at = Some(now + SHRINK_AFTER),
            Some(at) if now < at => {}
            Some(_) if !self.runs.is_empty() => self.shrink_at = Some(now + SHRINK_AFTER),
            Some(_) => {
                evaler_proto::shrink_buffer(f.read_buffer_mut(), BIG_BUFFER);
                evaler_proto::shrink_buffer(f.write_buffer_mut(), BIG_BUFFER);
                self.shrink_at = None;
            }
        }
    }

    async fn run(mut self) {
        // When the front RUN started running at the kernel (as far as we
        // can tell: when the RUN before it was answered).
        let mut run_started: Option<Instant> = None;
        loop {
            let timer = self.next_timer(run_started);
            let ev = tokio::select! {
                biased;
                p = async {
                    match &mut self.framed {
                        Some(f) => f.next().await,
                        None => std::future::pending().await,
                    }
                } => Ev::Packet(p),
                c = self.cmds.recv() => Ev::Cmd(c),
                s = async {
                    match &mut self.child {
                        Some(c) => c.wait().await,
                        None => std::future::pending().await,
                    }
                } => Ev::ChildExited(s),
                _ = async {
                    match timer {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                } => Ev::Timer,
            };
            match ev {
                Ev::Cmd(None) => {
                    // The Session was dropped.
                    self.end_kernel().await;
                    return;
                }
                Ev::Cmd(Some(cmd)) => {
                    let was_idle = self.runs.is_empty();
                    self.on_cmd(cmd).await;
                    if was_idle && !self.runs.is_empty() {
                        run_started = Some(Instant::now());
                    }
                }
                Ev::Packet(p) => {
                    let before = self.runs.len();
                    self.on_packet(p).await;
                    if self.shrink_at.is_none() {
                        self.shrink_buffers(Instant::now());
                    }
                    if self.runs.len() < before {
                        run_started = (!self.runs.is_empty()).then(Instant::now);
                    }
                }
                Ev::ChildExited(st) => {
                    self.child = None;
                    // Replies already sent come first.
                    while let Some(f) = &mut self.framed {
                        match tokio::time::timeout(Duration::from_millis(50), f.next()).await {
                            Ok(Some(p)) => self.on_packet(Some(p)).await,
                            _ => break,
                        }
                    }
                    let why = match st {
                        Ok(s) => format!("the kernel exited ({s})"),
                        Err(e) => format!("the kernel was lost: {e}"),
                    };
                    self.die(why).await;
                }
                Ev::Timer => self.on_timer(run_started).await,
            }
        }
    }

    async fn send(&mut self, req: SessionRequest) -> bool {
        let Some(f) = &mut self.framed else {
            return false;
        };
        match f.send(req).await {
            Ok(()) => {
                self.last_activity = Instant::now();
                true
            }
            Err(e) => {
                self.die(format!("lost the kernel connection: {e}")).await;
                false
            }
        }
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        if let Some(reason) = &self.dead {
            let err = SessionError::Dead(reason.clone());
            match cmd {
                Cmd::Run { reply, .. } => {
                    let _ = reply.send(Err(err));
                }
                Cmd::Ping { reply } => {
                    let _ = reply.send(Err(err));
                }
                Cmd::Interrupt => {}
                Cmd::Kill { reply } => {
                    self.end_kernel().await;
                    let _ = reply.send(());
                }
            }
            return;
        }
        match cmd {
            Cmd::Run {
                run,
                and_kill,
                reply,
            } => {
                if run.timeout.is_some_and(|t| !t.is_finite() || t < 0.0) {
                    let _ = reply.send(Err(SessionError::Invalid(
                        "the timeout must be a finite positive number".into(),
                    )));
                    return;
                }
                let timeout = run.timeout.map(Duration::from_secs_f64);
                let req = if and_kill {
                    SessionRequest::RunAndKill(run)
                } else {
                    SessionRequest::Run(run)
                };
                self.runs.push_back(PendingRun {
                    reply: Some(reply),
                    timeout,
                    and_kill,
                });
                self.set_status();
                self.send(req).await;
            }
            Cmd::Ping { reply } => {
                self.pings.push_back(PendingPing {
                    reply: Some(reply),
                    sent: Instant::now(),
                });
                self.send(SessionRequest::Ping).await;
            }
            Cmd::Interrupt => {
                self.send(SessionRequest::Interrupt).await;
            }
            Cmd::Kill { reply } => {
                self.send(SessionRequest::Kill).await;
                self.die("killed".into()).await;
                let _ = reply.send(());
            }
        }
    }

    async fn on_packet(
        &mut self,
        p: Option<
            Result<Result<SessionReply, evaler_proto::DecodeError>, evaler_proto::StreamError>,
        >,
    ) {
        self.last_activity = Instant::now();
        match p {
            None => {
                self.framed = None;
                self.die("the kernel closed the connection".into()).await;
            }
            Some(Err(e)) => {
                self.framed = None;
                self.die(format!("the kernel connection failed: {e}")).await;
            }
            Some(Ok(Err(e))) => {
                self.die(format!("the kernel sent an invalid packet: {e}"))
                    .await;
            }
            Some(Ok(Ok(reply))) => match reply {
                SessionReply::Result(r) => {
                    let Some(mut pending) = self.runs.pop_front() else {
                        self.die("the kernel sent a RESULT nobody asked for".into())
                            .await;
                        return;
                    };
                    let ends = match r.status {
                        Some(RunStatus::Exited) => Some(format!(
                            "the interpreter exited with status {}",
                            r.exit_code.unwrap_or(0)
                        )),
                        Some(RunStatus::Crashed) => Some(
                            r.stderr
                                .trim()
                                .strip_prefix("evaler: ")
                                .unwrap_or("the interpreter crashed")
                                .to_string(),
                        ),
                        _ if pending.and_kill => Some("ended by RUNANDKILL".into()),
                        _ => None,
                    };
                    // The status changes before the caller sees the RESULT.
                    let ended = ends.is_some();
                    match ends {
                        Some(reason) => self.mark_dead(reason),
                        None => self.set_status(),
                    }
                    if let Some(reply) = pending.reply.take() {
                        let _ = reply.send(Ok(r));
                    }
                    if ended {
                        self.end_kernel().await;
                    }
                }
                SessionReply::ConnectionOk => {
                    if let Some(mut p) = self.pings.pop_front() {
                        if let Some(reply) = p.reply.take() {
                            let _ = reply.send(Ok(p.sent.elapsed()));
                        }
                    }
                }
                SessionReply::ConnectionError(ce) => {
                    let reason = ce
                        .value
                        .unwrap_or_else(|| "the interpreter died".to_string());
                    self.die(reason).await;
                }
                SessionReply::Error(e) => {
                    // It answers the oldest request that can have one.
                    if let Some(mut r) = self.runs.pop_front() {
                        if let Some(reply) = r.reply.take() {
                            let _ = reply.send(Err(SessionError::Rejected(e.value)));
                        }
                        self.set_status();
                    } else if let Some(mut p) = self.pings.pop_front() {
                        if let Some(reply) = p.reply.take() {
                            let _ = reply.send(Err(SessionError::Rejected(e.value)));
                        }
                    } else {
                        self.die(format!("unexpected Error from the kernel: {}", e.value))
                            .await;
                    }
                }
                // Meant for the supervisor, which never passes it on; it
                // asks nothing and changes nothing here.
                SessionReply::Stopped => {}
            },
        }
    }

    async fn on_timer(&mut self, run_started: Option<Instant>) {
        let now = Instant::now();
        if self.shrink_at.is_some_and(|at| now >= at) {
            self.shrink_buffers(now);
        }
        if let Some(p) = self.pings.front() {
            if now >= p.sent + self.opts.ping_timeout {
                let why = format!("no answer to PING within {:?}", self.opts.ping_timeout);
                self.die(why).await;
                return;
            }
        }
        if let (Some(r), Some(start)) = (self.runs.front(), run_started) {
            if let Some(to) = r.timeout {
                if now >= start + to + self.opts.timeout_slack {
                    let why = format!(
                        "no RESULT within {:?} of the cell's {:?} timeout",
                        self.opts.timeout_slack, to
                    );
                    self.die(why).await;
                    return;
                }
            }
        }
        if self.pings.is_empty() && self.runs.is_empty() {
            if let Some(i) = self.opts.ping_interval {
                if now >= self.last_activity + i {
                    self.pings.push_back(PendingPing {
                        reply: None,
                        sent: now,
                    });
                    self.send(SessionRequest::Ping).await;
                }
            }
        }
    }

    /// Marks the session dead, fails everything pending, ends the kernel.
    async fn die(&mut self, reason: String) {
        if self.dead.is_some() {
            return;
        }
        self.mark_dead(reason);
        self.end_kernel().await;
    }

    /// Marks the session dead and fails everything pending.
    fn mark_dead(&mut self, reason: String) {
        if self.dead.is_some() {
            return;
        }
        let reason = if reason.contains("kernel exited") || reason.contains("closed the connection")
        {
            let t = self.tail.text();
            if t.is_empty() {
                reason
            } else {
                format!("{reason}: {t}")
            }
        } else {
            reason
        };
        tracing::debug!("session dead: {reason}");
        self.dead = Some(reason.clone());
        self.status
            .send_replace(SessionStatus::Dead(reason.clone()));
        for mut r in self.runs.drain(..) {
            if let Some(reply) = r.reply.take() {
                let _ = reply.send(Err(SessionError::Dead(reason.clone())));
            }
        }
        for mut p in self.pings.drain(..) {
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(Err(SessionError::Dead(reason.clone())));
            }
        }
    }

    /// Closes the connection and makes sure the kernel process is gone:
    /// KILL was sent (or the session died), so it exits by itself; if not
    /// within the kill grace, it is killed.
    async fn end_kernel(&mut self) {
        if let Some(mut f) = self.framed.take() {
            if self.dead.is_none() {
                let _ = f.send(SessionRequest::Kill).await;
            }
            let _ = SinkExt::<SessionRequest>::close(&mut f).await;
        }
        // EOF on its stdin too: the kernel's other way of being told.
        self._stdin = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        if tokio::time::timeout(self.opts.kill_grace, child.wait())
            .await
            .is_err()
        {
            // Its session is over (the box dies on KILL); it is still
            // removing the sandbox. Let it, in the background, and kill it
            // only if it hangs.
            tokio::spawn(async move {
                if tokio::time::timeout(REAP_AFTER, child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            });
        }
    }
}
