//! The judge server: the Evaler judge protocol (`docs/PROTOCOL.md`, sections
//! "Judge protocol" and "Judge semantics") over TCP.
//!
//! Layout, after tokio's mini-redis:
//!
//! - [`server`]: the listener, the connection limit, authentication of the
//!   address policy, and graceful shutdown;
//! - `connection`: one task per client, the protocol state machine (the only
//!   owner of that client's submissions and of its socket);
//! - `pool`: the boxes, one OS thread each, and the fair scheduler that hands
//!   them to connections;
//! - `compile` and `test_run`: what a box thread does with one job;
//! - `store`: compiled submissions and the memory they may use.
//!
//! A box thread never waits on a client: results go to the connection over a
//! channel whose length is bounded by the scheduler (a connection whose
//! results are not being read gets no more boxes), so a slow or vanished
//! client only ever stalls itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use evaler_sandbox::{Sandbox, SandboxConfig};
//! use evaler_server::judge::{Judge, JudgeConfig};
//! use evaler_server::languages::LanguageSet;
//!
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! let judge = Judge::new(&sandbox, LanguageSet::bundled()?, JudgeConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await?;
//! judge.serve(listener, tokio::signal::ctrl_c()).await?;
//! # Ok(()) }
//! ```

mod compile;
mod connection;
mod pool;
pub mod server;
mod store;
mod test_run;

use std::net::SocketAddr;
use std::time::Duration;

pub use server::{check_listen_address, sandbox_config_for, Judge, JudgeMonitor};

/// Default `--listen` address: loopback, so no token is needed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default queue bound of a connection (what `QLen 0` restores).
pub const DEFAULT_QUEUE: usize = 1000;
/// Highest `QLen` honoured; larger values are lowered to it.
pub const MAX_QUEUE: usize = 100_000;
/// Default limit on simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default maximum CPU time of a test (what `timelimit` 0 means).
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(10);
/// Default maximum wall time of a test (what `walltimelimit` 0 means).
pub const DEFAULT_MAX_WALL: Duration = Duration::from_secs(60);
/// Default maximum memory of a test, KiB (what `memorylimit` 0 means).
pub const DEFAULT_MAX_MEMORY_KIB: u64 = 1024 * 1024;
/// Default cap on a test's stdout, KiB; more is `OLE`. Small enough that
/// the worst-case JSON escaping (6 bytes per byte) still fits a 64 MiB
/// packet.
pub const DEFAULT_OUTPUT_KIB: u64 = 8 * 1024;
/// Default cap on any one file a test or a compiler writes, KiB.
pub const DEFAULT_FILE_SIZE_KIB: u64 = 64 * 1024;
/// Compiler output kept (stdout and stderr each); more fails the compile.
pub const COMPILE_CAPTURE_KIB: u64 = 1024;
/// Compiler output sent in `CResponse.output`; the rest is cut with a
/// marker line.
pub const COMPILE_OUTPUT_SHOWN: usize = 64 * 1024;

/// Client text echoed in a message is cut to 64 characters, as the protocol
/// crate does, so a huge bogus value never comes back as a huge reply.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}...", text.get(..cut).unwrap_or_default()),
        None => text.to_string(),
    }
}

/// Everything an operator can tune. `Default` gives the documented defaults
/// (`docs/PROTOCOL.md`, "Judge semantics").
#[derive(Clone)]
pub struct JudgeConfig {
    /// Boxes, i.e. tests running at once server-wide.
    pub boxes: usize,
    /// Default per-connection queue bound (tests and compiles waiting for a
    /// box or for their submission's compile).
    pub queue: usize,
    /// Simultaneous connections; one more is told so and closed.
    pub max_connections: usize,
    /// Shared secret; when set, every connection must start with `Auth`.
    pub token: Option<String>,
    /// Largest packet accepted or sent, bytes.
    pub max_packet: usize,
    /// CPU limit used for `timelimit` 0, and the highest accepted.
    pub max_time: Duration,
    /// Wall limit used for `walltimelimit` 0, and the highest accepted.
    pub max_wall: Duration,
    /// Memory limit used for `memorylimit` 0, and the highest accepted, KiB.
    pub max_memory_kib: u64,
    /// Highest `stacklimit` accepted, KiB (0 means "as much as memory").
    pub max_stack_kib: u64,
    /// Stdout kept per test, KiB; more is `OLE`.
    pub output_kib: u64,
    /// Largest file a test or compiler may write, KiB.
    pub file_size_kib: u64,
    /// Largest submission (all files the compiler left), bytes.
    pub max_submission_bytes: usize,
    /// Stored submissions of one connection, bytes.
    pub max_stored_per_connection: usize,
    /// Stored submissions of all connections, bytes.
    pub max_stored: usize,
    /// Queued test input and source code of one connection, bytes.
    pub max_queued_per_connection: usize,
    /// Queued test input and source code of all connections, bytes.
    pub max_queued: usize,
    /// How long a connection has to send `Auth` when a token is set.
    pub auth_timeout: Duration,
    /// Results a connection may have computed but not yet received beyond
    /// its `Assign` count, before it gets no more boxes.
    pub result_window: usize,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            boxes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: DEFAULT_QUEUE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            token: None,
            max_packet: evaler_proto::DEFAULT_MAX_PACKET,
            max_time: DEFAULT_MAX_TIME,
            max_wall: DEFAULT_MAX_WALL,
            max_memory_kib: DEFAULT_MAX_MEMORY_KIB,
            max_stack_kib: DEFAULT_MAX_MEMORY_KIB,
            output_kib: DEFAULT_OUTPUT_KIB,
            file_size_kib: DEFAULT_FILE_SIZE_KIB,
            max_submission_bytes: 64 << 20,
            max_stored_per_connection: 256 << 20,
            max_stored: 1 << 30,
            max_queued_per_connection: 256 << 20,
            max_queued: 1 << 30,
            auth_timeout: Duration::from_secs(10),
            result_window: 32,
        }
    }
}

/// Keeps the token out of logs.
impl std::fmt::Debug for JudgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeConfig")
            .field("boxes", &self.boxes)
            .field("queue", &self.queue)
            .field("max_connections", &self.max_connections)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_packet", &self.max_packet)
            .field("max_time", &self.max_time)
            .field("max_wall", &self.max_wall)
            .field("max_memory_kib", &self.max_memory_kib)
            .field("max_stack_kib", &self.max_stack_kib)
            .field("output_kib", &self.output_kib)
            .finish_non_exhaustive()
    }
}

/// Why the judge could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The address policy: only loopback is safe without a shared secret.
    #[error("refusing to listen on {addr} without a token: a non-loopback address lets anyone who can reach it run code here, so give --token-file (or listen on 127.0.0.1)")]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A token that is empty (after trimming) would accept anyone.
    #[error("the judge token is empty")]
    EmptyToken,
    /// A configuration value that cannot work.
    #[error("invalid judge configuration: {0}")]
    Config(String),
    /// Opening a box failed at start-up.
    #[error("opening box {index} of {total} failed: {source}")]
    Box {
        /// 1-based box number.
        index: usize,
        /// Boxes asked for.
        total: usize,
        /// The sandbox's reason.
        #[source]
        source: evaler_sandbox::SandboxError,
    },
    /// The listener failed.
    #[error("judge listener: {0}")]
    Io(#[from] std::io::Error),
}
