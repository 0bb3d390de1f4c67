//! `evaler kernel`: one session's supervisor and proxy.
//!
//! It runs as root outside the sandbox, listens on TCP, starts the language
//! server in a box with one end of a socket pair, and relays between one
//! client at a time and the server (the server, and so the session's state,
//! outlives client connections). The server only ever sees RUN: everything
//! that must work while a cell runs is done here, at once:
//!
//! - `PING`: `CONNECTION-OK` while the server process is alive,
//!   `CONNECTION-ERROR` with the reason once it is not;
//! - `INTERRUPT`: SIGINT to a native server process (the STDIO server gets
//!   the INTERRUPT packet instead: it reads its socket while a cell runs,
//!   and forwards SIGINT to its interpreter); if the cell has not ended
//!   [`KernelOptions::interrupt_grace`] later, the session is killed and the
//!   RUN gets `RESULT` with status `crashed`;
//! - a RUN's `timeout`: SIGINT at the deadline, status `timeout` when the
//!   cell stops, or the same escalation after [`KernelOptions::timeout_grace`]
//!   (status `crashed`);
//! - `KILL`: the box is killed and the kernel exits, answering nothing;
//! - RUNs that arrive while a cell runs wait in a FIFO queue.
//!
//! Replies from the server are decoded and checked before they are passed
//! on; anything malformed, unexpected or oversized counts as a crash. A
//! `RESULT` is decoded without copying its output ([`SessionReplyRef`]) and,
//! when there is nothing to change in it and the server wrote it exactly as
//! evaler encodes packets, the server's line itself is sent on: a megabyte
//! of output costs a parse and a compare, not a copy, a re-encoding and a
//! second buffer. See `docs/PROTOCOL.md`, "Session semantics", for the full
//! contract.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use evaler_proto::{
    shrink_buffer, ConnectionError, DecodeError, EncodeError, LineCodec, Run, RunResult,
    RunResultRef, RunStatus, SessionReply, SessionReplyRef, SessionRequest, SessionServerCodec,
    StreamError, ValidationError, DEFAULT_MAX_PACKET,
};
use evaler_sandbox::{Outcome, ProcessHandle, Sandbox, SandboxConfig};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tokio_util::codec::Framed;

use super::kernels::{KernelTable, KernelsError};
use super::launch::{self, describe_end, LaunchParams, SessionLimits};

/// Settings of one `evaler kernel`.
#[derive(Debug, Clone)]
pub struct KernelOptions {
    /// Kernel name or alias (see `kernels.toml`).
    pub lang: String,
    pub listen: SocketAddr,
    /// Overrides the kernel's memory limit, KiB.
    pub memory_kib: Option<u64>,
    /// Overrides the kernel's process limit.
    pub processes: Option<u64>,
    /// End the session when standard input reaches EOF (the host that
    /// started the kernel died).
    pub exit_with_stdin: bool,
    /// Timeout for RUNs that do not give one.
    pub default_timeout: Option<Duration>,
    /// How long a cell has to stop after INTERRUPT before the session is
    /// killed.
    pub interrupt_grace: Duration,
    /// The same after a RUN's timeout.
    pub timeout_grace: Duration,
    /// Once the interpreter is dead, how long a connected client may keep
    /// the kernel up (answering CONNECTION-ERROR) before it exits anyway.
    pub linger: Duration,
    /// Packet size limit, both directions.
    pub max_packet: usize,
    /// Bytes kept of a cell's stdout and of its stderr.
    pub output_cap: usize,
    /// Kernel definitions; `None`: `$EVALER_KERNELS` or the bundled file.
    pub kernels: Option<KernelTable>,
    /// The evaler binary for STDIO kernels; `None`: this executable.
    pub evaler_exe: Option<PathBuf>,
    pub sandbox: SandboxConfig,
}

impl KernelOptions {
    /// Defaults: loopback, any port, the kernel's own limits.
    pub fn new(lang: impl Into<String>) -> KernelOptions {
        KernelOptions {
            lang: lang.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            memory_kib: None,
            processes: None,
            exit_with_stdin: false,
            default_timeout: None,
            interrupt_grace: Duration::from_millis(500),
            timeout_grace: Duration::from_millis(100),
            linger: Duration::from_secs(30),
            max_packet: DEFAULT_MAX_PACKET,
            output_cap: super::stdio::DEFAULT_OUTPUT_CAP,
            kernels: None,
            evaler_exe: None,
            sandbox: SandboxConfig::default(),
        }
    }
}

/// Why a kernel could not run.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("unknown session language `{lang}` (known: {known})")]
    UnknownLang { lang: String, known: String },
    #[error(transparent)]
    Kernels(#[from] KernelsError),
    #[error("invalid limits: {0}")]
    Limits(String),
    #[error("sandbox: {0}")]
    Sandbox(#[from] evaler_sandbox::SandboxError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs a kernel to the end of its session. `on_listening` gets the bound
/// address as soon as the listener exists (the CLI prints it); the server
/// starts meanwhile. Returns the exit code: 0 when the session ended (KILL,
/// RUNANDKILL, exit, crash), 1 when the server could not start.
pub fn run_kernel(
    opts: KernelOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<i32, KernelError> {
    let table = match &opts.kernels {
        Some(t) => t.clone(),
        None => KernelTable::from_env_or_bundled()?,
    };
    let spec = table
        .get(&opts.lang)
        .ok_or_else(|| KernelError::UnknownLang {
            lang: opts.lang.clone(),
            known: table.names().collect::<Vec<_>>().join(", "),
        })?
        .clone();
    let limits = SessionLimits {
        memory_kib: opts.memory_kib.unwrap_or(spec.memory_kib),
        processes: opts.processes.unwrap_or(spec.processes),
    };
    if limits.memory_kib < 1024 || limits.processes == 0 {
        return Err(KernelError::Limits(
            "--memory must be at least 1024 KiB and --processes at least 1".into(),
        ));
    }
    let sandbox = Sandbox::new(opts.sandbox.clone())?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    for end in [&ours, &theirs] {
        big_send_buffer(end);
    }
    let params = LaunchParams {
        limits,
        evaler_exe: opts.evaler_exe.clone(),
        output_cap: opts.output_cap,
    };
    let run = launch::build_spec(&spec, &params, theirs).map_err(KernelError::Setup)?;
    if !opts.listen.ip().is_loopback() {
        // The session protocol has no authentication (the seed's clients
        // send none): say so where the operator sees it.
        tracing::warn!(
            addr = %opts.listen,
            "listening beyond loopback: anyone who can reach this address can run code in the session"
        );
    }
    let listener = std::net::TcpListener::bind(opts.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let launched = launch::launch(sandbox, run)?;
    on_listening(addr);

    let stdin_eof = if opts.exit_with_stdin {
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("evaler-stdin".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = [0u8; 512];
                let mut stdin = std::io::stdin().lock();
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = tx.send(());
            })?;
        Some(rx)
    } else {
        None
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let name = spec.name.clone();
    let interrupt_by_packet = matches!(spec.kind, super::kernels::KernelKind::Stdio { .. });
    let code = rt.block_on(async move {
        ours.set_nonblocking(true)?;
        let server = UnixStream::from_std(ours)?;
        let listener = TcpListener::from_std(listener)?;
        let kernel = Kernel {
            name,
            limits,
            opts,
            listener,
            client: None,
            next_gen: 0,
            server: Some(Framed::new(
                server,
                LineCodec::with_max_packet(DEFAULT_MAX_PACKET),
            )),
            started: Some(launched.started),
            ended: Some(launched.ended),
            stdin_eof,
            handle: None,
            kill_requested: false,
            queue: VecDeque::new(),
            current: None,
            dead: None,
            exit: None,
            server_eof_kill_at: None,
            start_failed: false,
            interrupt_by_packet,
            shrink_at: None,
        };
        Ok::<i32, std::io::Error>(kernel.run().await)
    })?;
    drop(rt);
    // The session thread has reported the end (or was given up on): joining
    // it here would only wait for a box that refuses to die.
    Ok(code)
}

struct Client {
    framed: Framed<TcpStream, SessionServerCodec>,
    gen: u64,
}

#[derive(Debug)]
struct Queued {
    run: Run,
    and_kill: bool,
    /// The connection that asked (replies to a closed one are dropped).
    gen: u64,
}

#[derive(Debug, Clone, Copy)]
enum Cause {
    Interrupt,
    Timeout(f64),
}

#[derive(Debug)]
struct StopRequest {
    cause: Cause,
    escalate_at: Instant,
    signalled: bool,
    /// The server said `STOPPED`: the cell's code has let go, and
    /// `escalate_at` was moved once to [`FINISH_AFTER_STOPPED`] from then.
    stopped: bool,
}

#[derive(Debug)]
struct Current {
    q: Queued,
    deadline: Option<Instant>,
    timeout: Option<f64>,
    stop: Option<StopRequest>,
}

struct Dead {
    reason: String,
    since: Instant,
}

enum Event {
    StdinEof,
    /// SIGTERM, SIGINT or SIGHUP: end the session as KILL does, cleanly.
    Signal(i32),
    Started(Option<Result<ProcessHandle, String>>),
    Server(Option<Result<BytesMut, StreamError>>),
    Ended(Option<Result<Outcome, String>>),
    Client(Option<Result<Result<SessionRequest, DecodeError>, StreamError>>),
    Timer,
    Accept(std::io::Result<(TcpStream, SocketAddr)>),
}

struct Kernel {
    name: String,
    limits: SessionLimits,
    opts: KernelOptions,
    listener: TcpListener,
    client: Option<Client>,
    next_gen: u64,
    /// Lines from the server (decoded here, see [`Kernel::on_server_line`]),
    /// requests to it.
    server: Option<Framed<UnixStream, LineCodec<SessionRequest>>>,
    started: Option<oneshot::Receiver<Result<ProcessHandle, String>>>,
    ended: Option<oneshot::Receiver<Result<Outcome, String>>>,
    stdin_eof: Option<oneshot::Receiver<()>>,
    handle: Option<ProcessHandle>,
    kill_requested: bool,
    queue: VecDeque<Queued>,
    current: Option<Current>,
    dead: Option<Dead>,
    exit: Option<i32>,
    server_eof_kill_at: Option<Instant>,
    start_failed: bool,
    /// STDIO servers take INTERRUPT as a packet, native ones as SIGINT.
    interrupt_by_packet: bool,
    /// After a big packet: when to give the connection buffers' memory
    /// back, if the session is idle by then.
    shrink_at: Option<Instant>,
}

/// Lets a packet of a megabyte or two go into the socket in one write:
/// with the default buffer (about 200 KiB) a big RESULT crosses in many
/// rounds, each a wake-up of the supervisor and of the server. Kernel memory
/// is only used while bytes are in flight. Best effort: root may go past
/// `net.core.wmem_max`, otherwise the kernel caps the size.
fn big_send_buffer(sock: &std::os::unix::net::UnixStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    const SIZE: usize = 2 << 20;
    if setsockopt(sock, sockopt::SndBufForce, &SIZE).is_err() {
        let _ = setsockopt(sock, sockopt::SndBuf, &SIZE);
    }
}

/// Connection buffers above this capacity are worth giving back.
const BIG_BUFFER: usize = 64 * 1024;

/// How long a session must be idle after a big packet before its buffers
/// shrink: back-to-back big cells keep theirs (no regrowing, no page
/// faults), an idle session holds no megabytes.
const SHRINK_AFTER: Duration = Duration::from_secs(1);

/// How long a server that said `STOPPED` has to send the stopped cell's
/// `RESULT`. Formatting a first traceback imports modules (~10 ms idle); on
/// a saturated machine that alone can take longer than the 100 ms a cell
/// gets to stop. Moved once per stop, so a cell that writes `STOPPED` itself
/// and goes on ignoring SIGINT gains this much at most.
const FINISH_AFTER_STOPPED: Duration = Duration::from_secs(2);

/// Truncates to at most `max` bytes on a character boundary, without
/// copying a borrowed string.
fn cut_cow(s: &mut Cow<'_, str>, max: usize) {
    let cut = super::stdio::char_floor(s, max);
    match s {
        Cow::Borrowed(b) => *b = b.get(..cut).unwrap_or_default(),
        Cow::Owned(o) => o.truncate(cut),
    }
}

async fn recv_opt<T>(rx: &mut Option<oneshot::Receiver<T>>) -> Option<T> {
    match rx {
        Some(r) => {
            let v = r.await.ok();
            *rx = None;
            v
        }
        None => std::future::pending().await,
    }
}

async fn next_opt<S: futures::Stream + Unpin>(s: &mut Option<S>) -> Option<S::Item> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn client_next(
    c: &mut Option<Client>,
) -> Option<Result<Result<SessionRequest, DecodeError>, StreamError>> {
    match c {
        Some(c) => c.framed.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A handler for `kind` with its number, or `None` (logged) if it cannot
/// be installed.
fn handler(kind: SignalKind) -> Option<(i32, Signal)> {
    let n = kind.as_raw_value();
    signal(kind)
        .map_err(|e| tracing::warn!("cannot handle signal {n}: {e}"))
        .ok()
        .map(|s| (n, s))
}

/// The signal's next delivery (its number); pending forever without a
/// handler.
async fn delivered(h: &mut Option<(i32, Signal)>) -> i32 {
    match h {
        Some((n, s)) => {
            s.recv().await;
            *n
        }
        None => std::future::pending().await,
    }
}

fn connection_error(reason: &str) -> SessionReply {
    SessionReply::ConnectionError(ConnectionError {
        value: Some(reason.to_string()),
    })
}

impl Kernel {
    async fn run(mut self) -> i32 {
        // Without handlers these signals would end the process before it
        // removes its box: a `kill` or a Ctrl-C must leave nothing behind.
        let mut term = handler(SignalKind::terminate());
        let mut int = handler(SignalKind::interrupt());
        let mut hup = handler(SignalKind::hangup());
        while self.exit.is_none() {
            let timer = self.next_timer();
            let accepting = self.client.is_none();
            let ev = tokio::select! {
                biased;
                sig = delivered(&mut term) => Event::Signal(sig),
                sig = delivered(&mut int) => Event::Signal(sig),
                sig = delivered(&mut hup) => Event::Signal(sig),
                _ = recv_opt(&mut self.stdin_eof) => Event::StdinEof,
                r = recv_opt(&mut self.started) => Event::Started(r),
                p = next_opt(&mut self.server) => Event::Server(p),
                r = recv_opt(&mut self.ended) => Event::Ended(r),
                p = client_next(&mut self.client) => Event::Client(p),
                _ = sleep_opt(timer) => Event::Timer,
                a = self.listener.accept(), if accepting => Event::Accept(a),
            };
            self.on(ev).await;
            if self.shrink_at.is_none() && self.has_big_buffers() {
                self.shrink_at = Some(Instant::now() + SHRINK_AFTER);
            }
        }
        self.shutdown().await
    }

    async fn on(&mut self, ev: Event) {
        match ev {
            Event::StdinEof => {
                tracing::debug!("standard input closed: ending the session");
                self.kill();
                self.exit = Some(0);
            }
            Event::Signal(sig) => {
                tracing::debug!(sig, "signalled: ending the session");
                self.kill();
                self.exit = Some(128 + sig);
            }
            Event::Started(r) => self.on_started(r).await,
            Event::Server(p) => self.on_server(p).await,
            Event::Ended(r) => self.on_ended(r).await,
            Event::Client(p) => self.on_client(p).await,
            Event::Timer => self.on_timer().await,
            Event::Accept(Ok((stream, peer))) => {
                let _ = stream.set_nodelay(true);
                tracing::debug!(%peer, "client connected");
                self.client = Some(Client {
                    framed: Framed::new(
                        stream,
                        SessionServerCodec::with_max_packet(self.opts.max_packet),
                    ),
                    gen: self.next_gen,
                });
                self.next_gen += 1;
            }
            Event::Accept(Err(e)) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if let Some(c) = &self.current {
            match &c.stop {
                Some(s) => add(s.escalate_at),
                None => {
                    if let Some(d) = c.deadline {
                        add(d);
                    }
                }
            }
        }
        if let Some(d) = &self.dead {
            add(d.since + self.opts.linger);
        }
        if let Some(at) = self.server_eof_kill_at {
            add(at);
        }
        if let Some(at) = self.shrink_at {
            add(at);
        }
        t
    }

    /// Kills the box (now, or as soon as it has started).
    fn kill(&mut self) {
        self.kill_requested = true;
        if let Some(h) = &self.handle {
            h.kill();
        }
    }

    fn exit_code(&self) -> i32 {
        i32::from(self.start_failed)
    }

    async fn on_started(&mut self, r: Option<Result<ProcessHandle, String>>) {
        match r {
            Some(Ok(h)) => {
                tracing::debug!(init = h.init_pid(), "server started");
                if self.kill_requested {
                    h.kill();
                }
                self.handle = Some(h);
                // An interrupt asked for before the handle existed.
                let pending = self
                    .current
                    .as_ref()
                    .and_then(|c| c.stop.as_ref())
                    .is_some_and(|s| !s.signalled);
                if pending && !self.interrupt_by_packet {
                    let signalled = self.signal_interrupt().await;
                    if let Some(stop) = self.current.as_mut().and_then(|c| c.stop.as_mut()) {
                        stop.signalled = signalled;
                    }
                }
            }
            Some(Err(msg)) => {
                let reason = format!("could not start the {} session: {msg}", self.name);
                tracing::error!("{reason}");
                self.start_failed = true;
                self.die(reason).await;
            }
            None => {
                let reason = format!("could not start the {} session", self.name);
                tracing::error!("{reason}");
                self.start_failed = true;
                self.die(reason).await;
            }
        }
    }

    /// A protocol violation by the server: the session is over.
    async fn crash(&mut self, reason: String) {
        tracing::warn!("{reason}");
        self.kill();
        self.die(reason).await;
    }

    async fn on_server(&mut self, p: Option<Result<BytesMut, StreamError>>) {
        match p {
            None | Some(Err(StreamError::Io(_))) => {
                tracing::debug!("server closed its socket");
                self.server = None;
                if self.dead.is_none() && self.ended.is_some() {
                    // Its exit report follows; make sure there is one.
                    self.server_eof_kill_at = Some(Instant::now() + Duration::from_millis(200));
                }
            }
            Some(Err(e)) => {
                self.server = None;
                let reason = format!("the {} server broke the protocol: {e}", self.name);
                self.crash(reason).await;
            }
            Some(Ok(line)) => self.on_server_line(line).await,
        }
    }

    /// One packet from the server, checked; a `RESULT` goes on to the
    /// client as the server's own line when nothing in it changes.
    async fn on_server_line(&mut self, mut line: BytesMut) {
        let (reply, verbatim) = match SessionReplyRef::decode_verbatim(&line) {
            Ok(decoded) => decoded,
            Err(e) => {
                let reason = format!("the {} server sent an invalid packet: {e}", self.name);
                self.crash(reason).await;
                return;
            }
        };
        match reply {
            SessionReplyRef::Result(mut r) => {
                if self.current.is_none() || self.dead.is_some() {
                    let reason = format!("the {} server sent a RESULT nobody asked for", self.name);
                    self.crash(reason).await;
                    return;
                }
                let Some(cur) = self.current.take() else {
                    return;
                };
                let changed = self.sanitize(&mut r, &cur);
                let (status, exit_code) = (r.status, r.exit_code);
                let reply = SessionReplyRef::Result(r);
                let limit = self.opts.max_packet;
                let out = if verbatim && !changed && line.len() <= limit {
                    drop(reply);
                    line.extend_from_slice(b"\n");
                    Ok(line.freeze())
                } else {
                    reply.encode_line(limit).map(Bytes::from)
                };
                self.finish_current(cur, out, status, exit_code).await;
            }
            SessionReplyRef::ConnectionError(ce) => {
                let reason = ce
                    .value
                    .unwrap_or_else(|| format!("the {} interpreter died", self.name));
                self.kill();
                self.die(reason).await;
            }
            SessionReplyRef::ConnectionOk => {}
            // Outside a stop (a cell raising KeyboardInterrupt itself) it
            // changes nothing.
            SessionReplyRef::Stopped => {
                let stop = self.current.as_mut().and_then(|c| c.stop.as_mut());
                if let Some(stop) = stop.filter(|s| !s.stopped) {
                    stop.stopped = true;
                    stop.escalate_at = Instant::now() + FINISH_AFTER_STOPPED;
                }
            }
            SessionReplyRef::Error(e) => {
                let reason = format!("the {} server rejected a request: {}", self.name, e.value);
                self.crash(reason).await;
            }
        }
    }

    async fn on_ended(&mut self, r: Option<Result<Outcome, String>>) {
        self.server_eof_kill_at = None;
        // Replies the server sent before it ended come first (a RESULT with
        // status "exited", a CONNECTION-ERROR with the real reason).
        while self.server.is_some() {
            let next =
                tokio::time::timeout(Duration::from_millis(100), next_opt(&mut self.server)).await;
            match next {
                Ok(None) | Err(_) => {
                    self.server = None;
                }
                Ok(p) => self.on_server(p).await,
            }
        }
        let reason = match &r {
            Some(Ok(outcome)) => {
                tracing::debug!(
                    verdict = %outcome.verdict,
                    exit_code = ?outcome.exit_code,
                    signal = ?outcome.signal,
                    comment = %outcome.comment,
                    stdout = %String::from_utf8_lossy(&outcome.stdout),
                    stderr = %String::from_utf8_lossy(&outcome.stderr),
                    "server ended"
                );
                describe_end(&self.name, outcome, &self.limits)
            }
            Some(Err(e)) => format!("the {} session failed: {e}", self.name),
            None => format!("the {} server ended", self.name),
        };
        self.handle = None;
        self.die(reason).await;
    }

    async fn on_client(
        &mut self,
        p: Option<Result<Result<SessionRequest, DecodeError>, StreamError>>,
    ) {
        let Some(gen) = self.client.as_ref().map(|c| c.gen) else {
            return;
        };
        match p {
            None | Some(Err(StreamError::Io(_))) | Some(Err(StreamError::Encode(_))) => {
                tracing::debug!("client disconnected");
                self.drop_client();
            }
            Some(Err(StreamError::Decode(e))) => {
                self.reply(gen, SessionReply::from(&e)).await;
                self.drop_client();
            }
            Some(Ok(Err(e))) => self.reply(gen, SessionReply::from(&e)).await,
            Some(Ok(Ok(req))) => self.on_request(req, gen).await,
        }
    }

    fn drop_client(&mut self) {
        self.client = None;
        if self.dead.is_some() {
            self.exit = Some(self.exit_code());
        }
    }

    async fn reply(&mut self, gen: u64, reply: SessionReply) {
        let Some(c) = self.client.as_mut().filter(|c| c.gen == gen) else {
            return;
        };
        if let Err(e) = c.framed.send(reply).await {
            tracing::debug!("cannot answer the client: {e}");
            self.drop_client();
        }
    }

    /// Sends an encoded packet (a line ending with `\n`), or drops the
    /// client if it could not be encoded (as [`Kernel::reply`] does).
    async fn reply_line(&mut self, gen: u64, line: Result<Bytes, EncodeError>) {
        let Some(c) = self.client.as_mut().filter(|c| c.gen == gen) else {
            return;
        };
        let sent = match line {
            // Whatever the codec holds goes first (it holds nothing: every
            // send flushes), then the line, straight to the socket.
            Ok(line) => match SinkExt::<SessionReply>::flush(&mut c.framed).await {
                Ok(()) => c
                    .framed
                    .get_mut()
                    .write_all(&line)
                    .await
                    .map_err(StreamError::from),
                Err(e) => Err(e),
            },
            Err(e) => Err(StreamError::Encode(e)),
        };
        if let Err(e) = sent {
            tracing::debug!("cannot answer the client: {e}");
            self.drop_client();
        }
    }

    async fn on_request(&mut self, req: SessionRequest, gen: u64) {
        match req {
            SessionRequest::Kill => {
                self.kill();
                self.exit = Some(self.exit_code());
            }
            SessionRequest::Ping => {
                let reply = match &self.dead {
                    Some(d) => connection_error(&d.reason),
                    None => SessionReply::ConnectionOk,
                };
                self.reply(gen, reply).await;
            }
            SessionRequest::Interrupt => {
                if self.current.is_some() {
                    self.request_stop(Cause::Interrupt).await;
                }
            }
            SessionRequest::Run(_) | SessionRequest::RunAndKill(_) => {
                let (run, and_kill) = match req {
                    SessionRequest::RunAndKill(run) => (run, true),
                    SessionRequest::Run(run) => (run, false),
                    _ => return,
                };
                let packet = if and_kill { "RUNANDKILL" } else { "RUN" };
                if let Some(t) = run.timeout {
                    if !t.is_finite() {
                        let e = ValidationError::NonFinite {
                            packet,
                            field: "timeout",
                            value: t,
                        };
                        self.reply(
                            gen,
                            SessionReply::Error(evaler_proto::ErrorPacket::new(e.to_string())),
                        )
                        .await;
                        return;
                    }
                    if t < 0.0 {
                        let e = ValidationError::Negative {
                            packet,
                            field: "timeout",
                            value: format!("{t}"),
                        };
                        self.reply(
                            gen,
                            SessionReply::Error(evaler_proto::ErrorPacket::new(e.to_string())),
                        )
                        .await;
                        return;
                    }
                }
                if let Some(d) = &self.dead {
                    let reply = connection_error(&d.reason);
                    self.reply(gen, reply).await;
                    return;
                }
                self.queue.push_back(Queued { run, and_kill, gen });
                self.dispatch().await;
            }
        }
    }

    /// Starts the next queued cell if none runs.
    async fn dispatch(&mut self) {
        if self.current.is_some() || self.dead.is_some() || self.exit.is_some() {
            return;
        }
        let Some(server) = self.server.as_mut() else {
            return;
        };
        let Some(q) = self.queue.pop_front() else {
            return;
        };
        let timeout = q
            .run
            .timeout
            .filter(|t| *t > 0.0)
            .or(self.opts.default_timeout.map(|d| d.as_secs_f64()));
        let mut q = q;
        // The code is not needed here once sent: moved, not copied.
        let req = SessionRequest::Run(Run {
            code: std::mem::take(&mut q.run.code),
            timeout: None,
        });
        let sent = server.send(req).await;
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.min(1e9)));
        self.current = Some(Current {
            q,
            deadline,
            timeout,
            stop: None,
        });
        if let Err(e) = sent {
            let reason = format!("lost the {} server: {e}", self.name);
            self.crash(reason).await;
        }
    }

    /// Asks the server to stop the running cell.
    async fn signal_interrupt(&mut self) -> bool {
        if self.interrupt_by_packet {
            match self.server.as_mut() {
                Some(s) => s.send(SessionRequest::Interrupt).await.is_ok(),
                None => false,
            }
        } else {
            self.handle
                .as_ref()
                .is_some_and(|h| h.signal_program(libc::SIGINT))
        }
    }

    async fn request_stop(&mut self, cause: Cause) {
        let grace = match cause {
            Cause::Interrupt => self.opts.interrupt_grace,
            Cause::Timeout(_) => self.opts.timeout_grace,
        };
        if self.current.is_none() {
            return;
        }
        let again = self.current.as_ref().is_some_and(|c| c.stop.is_some());
        // Ctrl-C twice: signal again, keep the first deadline.
        let signalled = self.signal_interrupt().await;
        tracing::debug!(?cause, signalled, again, "interrupting the cell");
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        match &mut cur.stop {
            Some(stop) => stop.signalled |= signalled,
            None => {
                cur.stop = Some(StopRequest {
                    cause,
                    escalate_at: Instant::now() + grace,
                    signalled,
                    stopped: false,
                })
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.shrink_at.is_some_and(|at| now >= at) {
            self.shrink_at = None;
            self.shrink_buffers();
        }
        if let Some(at) = self.server_eof_kill_at {
            if now >= at {
                self.server_eof_kill_at = None;
                self.kill();
            }
        }
        let mut escalate = None;
        let mut timed_out = None;
        if let Some(c) = &self.current {
            match &c.stop {
                Some(s) if now >= s.escalate_at => escalate = Some((s.cause, s.stopped)),
                None if c.deadline.is_some_and(|d| now >= d) => timed_out = c.timeout,
                _ => {}
            }
        }
        if let Some(t) = timed_out {
            self.request_stop(Cause::Timeout(t)).await;
        }
        if let Some((cause, stopped)) = escalate {
            let reason = match cause {
                _ if stopped => format!(
                    "the {} server stopped the cell but sent no RESULT within {} s, so the session was ended",
                    self.name,
                    FINISH_AFTER_STOPPED.as_secs()
                ),
                Cause::Interrupt => format!(
                    "the cell did not stop within {} ms of INTERRUPT, so the session was ended",
                    self.opts.interrupt_grace.as_millis()
                ),
                Cause::Timeout(t) => format!(
                    "the cell did not stop within {} ms of its {t} s timeout, so the session was ended",
                    self.opts.timeout_grace.as_millis()
                ),
            };
            tracing::debug!("{reason}");
            self.kill();
            self.die(reason).await;
        }
        if let Some(d) = &self.dead {
            if now >= d.since + self.opts.linger {
                self.exit = Some(self.exit_code());
            }
        }
    }

    /// Whether a big packet (a RESULT, or a RUN with megabytes of code) left
    /// a connection buffer large.
    fn has_big_buffers(&self) -> bool {
        let server = self
            .server
            .as_ref()
            .map(|s| (s.read_buffer(), s.write_buffer()));
        let client = self
            .client
            .as_ref()
            .map(|c| (c.framed.read_buffer(), c.framed.write_buffer()));
        [server, client]
            .into_iter()
            .flatten()
            .any(|(r, w)| r.capacity() > BIG_BUFFER || w.capacity() > BIG_BUFFER)
    }

    /// Gives back the memory of buffers that a big packet grew, if the
    /// session is idle (otherwise later: they are in use).
    fn shrink_buffers(&mut self) {
        if self.current.is_some() {
            self.shrink_at = Some(Instant::now() + SHRINK_AFTER);
            return;
        }
        if let Some(server) = &mut self.server {
            shrink_buffer(server.read_buffer_mut(), BIG_BUFFER);
            shrink_buffer(server.write_buffer_mut(), BIG_BUFFER);
        }
        if let Some(c) = &mut self.client {
            shrink_buffer(c.framed.read_buffer_mut(), BIG_BUFFER);
            shrink_buffer(c.framed.write_buffer_mut(), BIG_BUFFER);
        }
    }

    /// Caps what a RESULT may carry and maps statuses the server does not
    /// know about (an interrupt we sent for a timeout). Returns whether
    /// anything changed.
    fn sanitize(&self, r: &mut RunResultRef<'_>, cur: &Current) -> bool {
        let cap = self.opts.output_cap.saturating_mul(3).max(1024);
        let mut changed = false;
        for s in [&mut r.stdout, &mut r.stderr] {
            if s.len() > cap {
                cut_cow(s, cap);
                changed = true;
            }
        }
        if let Some(v) = &mut r.value {
            if v.len() > 1 << 20 {
                cut_cow(v, 1 << 20);
                changed = true;
            }
        }
        if changed {
            r.truncated = Some(true);
        }
        if r.time.is_some_and(|t| !t.is_finite() || t < 0.0) {
            r.time = None;
            changed = true;
        }
        if r.status != Some(RunStatus::Exited) && r.exit_code.is_some() {
            r.exit_code = None;
            changed = true;
        }
        if let Some(stop) = &cur.stop {
            if matches!(stop.cause, Cause::Timeout(_)) && r.status == Some(RunStatus::Interrupted) {
                r.status = Some(RunStatus::Timeout);
                changed = true;
            }
        }
        changed
    }

    /// The running cell's RESULT (`line`, already checked and encoded) is
    /// in: answer it, then start the next cell or end the session.
    async fn finish_current(
        &mut self,
        cur: Current,
        line: Result<Bytes, EncodeError>,
        status: Option<RunStatus>,
        exit_code: Option<i64>,
    ) {
        let exited = (status == Some(RunStatus::Exited)).then(|| exit_code.unwrap_or(0));
        self.reply_line(cur.q.gen, line).await;
        if let Some(code) = exited {
            self.kill();
            self.die(format!(
                "the {} interpreter exited with status {code}",
                self.name
            ))
            .await;
        } else if cur.q.and_kill {
            self.kill();
            let reason = "the session was ended by RUNANDKILL".to_string();
            for q in std::mem::take(&mut self.queue) {
                self.reply(q.gen, connection_error(&reason)).await;
            }
            self.exit = Some(0);
        } else {
            self.dispatch().await;
        }
    }

    /// The interpreter is gone: the running cell and the queue are
    /// answered, and from now on everything gets CONNECTION-ERROR.
    async fn die(&mut self, reason: String) {
        if self.dead.is_some() {
            return;
        }
        tracing::debug!("session over: {reason}");
        self.dead = Some(Dead {
            reason: reason.clone(),
            since: Instant::now(),
        });
        if let Some(cur) = self.current.take() {
            let reply = if cur.stop.is_some() {
                SessionReply::Result(RunResult {
                    stdout: String::new(),
                    stderr: format!("evaler: {reason}\n"),
                    status: Some(RunStatus::Crashed),
                    value: None,
                    time: None,
                    exit_code: None,
                    truncated: None,
                })
            } else {
                connection_error(&reason)
            };
            self.reply(cur.q.gen, reply).await;
        }
        for q in std::mem::take(&mut self.queue) {
            self.reply(q.gen, connection_error(&reason)).await;
        }
        if self.client.is_none() {
            self.exit = Some(self.exit_code());
        }
    }

    async fn shutdown(mut self) -> i32 {
        let code = self.exit.unwrap_or(0);
        self.kill();
        // A server still starting is killed as soon as it exists.
        if self.handle.is_none() {
            if let Some(started) = self.started.take() {
                if let Ok(Ok(Ok(h))) = tokio::time::timeout(Duration::from_secs(3), started).await {
                    h.kill();
                    self.handle = Some(h);
                }
            }
        }
        // Let the session thread clean the box up (it reports after).
        if let Some(ended) = self.ended.take() {
            if self.handle.is_some() {
                let _ = tokio::time::timeout(Duration::from_secs(3), ended).await;
            }
        }
        if let Some(mut c) = self.client.take() {
            let _ = SinkExt::<SessionReply>::close(&mut c.framed).await;
        }
        code
    }
}
