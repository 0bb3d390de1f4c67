//! `evaler serve`: the judge server over TCP until Ctrl-C or SIGTERM.
//!
//! Exit codes: 0 after a graceful shutdown, 2 for a usage error (including
//! a non-loopback address without `--token-file`), 1 when the server could
//! not start (no root, no cgroups, port in use, ...).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use evaler_sandbox::{Sandbox, SandboxConfig};
use evaler_server::judge::{self, Judge, JudgeConfig};
use evaler_server::languages::LanguageSet;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; anything but loopback needs --token-file.
    #[arg(long, value_name = "ADDR", default_value = judge::DEFAULT_LISTEN)]
    listen: String,
    /// Boxes, i.e. tests running at once [default: number of CPUs].
    #[arg(long, value_name = "N")]
    boxes: Option<usize>,
    /// Default queue bound of a connection (what QLen 0 restores).
    #[arg(long, value_name = "N", default_value_t = judge::DEFAULT_QUEUE)]
    queue: usize,
    /// Languages file [default: the bundled languages.toml].
    #[arg(long, value_name = "FILE", env = "EVALER_LANGUAGES")]
    languages: Option<PathBuf>,
    /// Sandbox state directory (slot locks, staging) [default: /run/evaler].
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// File holding the shared secret clients send in Auth (surrounding
    /// whitespace ignored); required on a non-loopback address.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Simultaneous connections; one more gets an Error and is closed.
    #[arg(long, value_name = "N", default_value_t = judge::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Largest CPU time limit of a test, seconds (what timelimit 0 means).
    #[arg(long, value_name = "S", default_value_t = judge::DEFAULT_MAX_TIME.as_secs_f64())]
    max_time: f64,
    /// Largest wall-clock limit of a test, seconds (walltimelimit 0).
    #[arg(long, value_name = "S", default_value_t = judge::DEFAULT_MAX_WALL.as_secs_f64())]
    max_wall: f64,
    /// Largest memory limit of a test, KiB (memorylimit 0).
    #[arg(long, value_name = "KB", default_value_t = judge::DEFAULT_MAX_MEMORY_KIB)]
    max_memory: u64,
    /// Largest packet accepted or sent, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = evaler_proto::DEFAULT_MAX_PACKET)]
    max_packet: usize,
}

fn usage(msg: impl std::fmt::Display) -> Result<i32> {
    eprintln!("evaler serve: {msg}");
    Ok(2)
}

fn seconds(flag: &str, s: f64) -> std::result::Result<Duration, String> {
    if s.is_finite() && s > 0.0 && s < 1e6 {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!(
            "--{flag} must be a positive number of seconds, not {s}"
        ))
    }
}

pub fn main(args: ServeArgs) -> Result<i32> {
    let addr: SocketAddr = match args.listen.parse() {
        Ok(a) => a,
        Err(_) => return usage(format!("--listen takes IP:PORT, not {:?}", args.listen)),
    };
    let token = match &args.token_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --token-file {}", path.display()))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return usage(format!("--token-file {} is empty", path.display()));
            }
            Some(token)
        }
    };
    if let Err(e) = judge::check_listen_address(addr, token.is_some()) {
        return usage(e);
    }
    let (max_time, max_wall) = match (
        seconds("max-time", args.max_time),
        seconds("max-wall", args.max_wall),
    ) {
        (Ok(t), Ok(w)) => (t, w),
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    let boxes = args
        .boxes
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if boxes == 0 || args.queue == 0 || args.max_connections == 0 || args.max_memory == 0 {
        return usage("--boxes, --queue, --max-connections and --max-memory must be at least 1");
    }
    let languages = match &args.languages {
        Some(path) => LanguageSet::load(path)?,
        None => LanguageSet::bundled()?,
    };
    let mut sandbox_config = SandboxConfig::default();
    if let Some(dir) = &args.workdir {
        sandbox_config.workdir = dir.clone();
    }
    let sandbox_config = judge::sandbox_config_for(&languages, sandbox_config);
    let sandbox = Sandbox::new(sandbox_config).context("starting the sandbox")?;
    let config = JudgeConfig {
        boxes,
        queue: args.queue,
        max_connections: args.max_connections,
        token,
        max_packet: args.max_packet,
        max_time,
        max_wall,
        max_memory_kib: args.max_memory,
        max_stack_kib: args.max_memory,
        ..JudgeConfig::default()
    };
    let judge = Judge::new(&sandbox, languages, config).context("starting the judge")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("evaler-serve")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // Handlers are installed before the "listening" line, so a signal
        // sent as soon as the port is known still stops us gracefully.
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        // Scripts (and the tests) read the real port from this line.
        eprintln!("evaler serve: listening on {local} with {boxes} boxes");
        judge.serve(listener, shutdown).await?;
        eprintln!("evaler serve: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

/// Ctrl-C (SIGINT) or SIGTERM, whichever comes first. The handlers are
/// registered by this call, not when the future is first polled.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
