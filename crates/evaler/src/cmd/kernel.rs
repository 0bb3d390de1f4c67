//! `evaler kernel`: one sandboxed interactive session, served over TCP.
//!
//! Prints the bound `IP:PORT` as the first line of stdout, then supervises
//! the session until it ends (KILL, RUNANDKILL, an `exit` in a cell, a
//! crash). The work is in `evaler_server::session::supervisor`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use evaler_server::session::supervisor::{run_kernel, KernelError, KernelOptions};
use evaler_server::session::KernelTable;

#[derive(Args, Debug)]
pub struct KernelArgs {
    /// Session language: python, ruby, bash, zsh, cpp (or an alias; see kernels.toml).
    #[arg(long, value_name = "LANG")]
    lang: String,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Memory limit of the whole session in KiB [default: the kernel's, 512 MiB for most].
    #[arg(long, value_name = "KB")]
    memory: Option<u64>,
    /// Processes and threads alive at once [default: the kernel's, 64].
    #[arg(long, value_name = "N")]
    processes: Option<u64>,
    /// End the session when standard input reaches EOF (how a host ties a
    /// session's life to its own: it keeps the kernel's stdin open).
    #[arg(long)]
    exit_with_stdin: bool,
    /// Timeout in seconds for cells whose RUN gives none.
    #[arg(long, value_name = "S")]
    timeout: Option<f64>,
    /// Milliseconds a cell has to stop after INTERRUPT before the session is killed.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    interrupt_grace: u64,
    /// Milliseconds a cell has to stop after its timeout before the session is killed.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    timeout_grace: u64,
    /// Kernel definitions to use instead of the bundled kernels.toml [env: EVALER_KERNELS].
    #[arg(long, value_name = "FILE")]
    kernels: Option<PathBuf>,
}

fn usage(msg: impl std::fmt::Display) -> Result<i32> {
    eprintln!("evaler kernel: {msg}");
    Ok(2)
}

pub fn main(args: KernelArgs) -> Result<i32> {
    let mut opts = KernelOptions::new(&args.lang);
    opts.listen = args.listen;
    opts.memory_kib = args.memory;
    opts.processes = args.processes;
    opts.exit_with_stdin = args.exit_with_stdin;
    opts.interrupt_grace = Duration::from_millis(args.interrupt_grace);
    opts.timeout_grace = Duration::from_millis(args.timeout_grace);
    if let Some(t) = args.timeout {
        if !(t.is_finite() && t > 0.0 && t < 1e9) {
            return usage(format!(
                "--timeout must be a positive number of seconds, not {t}"
            ));
        }
        opts.default_timeout = Some(Duration::from_secs_f64(t));
    }
    if let Some(path) = &args.kernels {
        match KernelTable::load(path) {
            Ok(t) => opts.kernels = Some(t),
            Err(e) => return usage(e),
        }
    }
    let res = run_kernel(opts, |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{addr}");
        let _ = out.flush();
    });
    match res {
        Ok(code) => Ok(code),
        Err(
            e
            @ (KernelError::UnknownLang { .. } | KernelError::Limits(_) | KernelError::Kernels(_)),
        ) => usage(e),
        Err(e) => Err(e.into()),
    }
}
