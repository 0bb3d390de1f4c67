//! `evaler kernel`: one sandboxed interactive session, served over TCP.
//!
//! Prints the bound `IP:PORT` as the first line of stdout, then supervises
//! the session until it ends (KILL, RUNANDKILL, an `exit` in a cell, a
//! crash). The work is in `evaler_server::session::supervisor`.
//!
//! The supervisor lives as long as its session, idle most of the time, and
//! a host runs one per session: its memory counts a hundred times. So once
//! its arguments are checked, `evaler kernel` execs `evaler-kernel` from its
//! own directory (same pid, same stdin), an executable with just the
//! supervisor in it: a third of `evaler`'s code, and ~1.5 MiB less resident
//! per session, since the kernel maps in nearly every page of an executable's
//! code through fault-around. The arguments go over as JSON. It is also the
//! STDIO server it starts in the box. Without `evaler-kernel` beside it,
//! `evaler kernel` supervises in-process.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use evaler_server::session::supervisor::{run_kernel, KernelError, KernelOptions};
use evaler_server::session::KernelTable;
use serde::{Deserialize, Serialize};

/// The executable `evaler kernel` hands over to.
pub const SLIM_EXE: &str = "evaler-kernel";
/// Its one option: the [`KernelArgs`] as JSON.
const ARGS_FLAG: &str = "--args-json";

#[derive(Args, Debug, Serialize, Deserialize)]
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
    let opts = match options(&args) {
        Ok(opts) => opts,
        Err(msg) => return usage(msg),
    };
    if let Ok(me) = std::env::current_exe() {
        let slim = me.with_file_name(SLIM_EXE);
        if slim.is_file() {
            let json = serde_json::to_string(&args).context("encoding the kernel's arguments")?;
            // Returns only if the exec failed.
            let err = std::process::Command::new(&slim)
                .arg(ARGS_FLAG)
                .arg(json)
                .exec();
            tracing::warn!(
                "cannot run {}: {err}; supervising in this process",
                slim.display()
            );
        }
    }
    serve(opts)
}

/// `evaler-kernel --args-json JSON`, from [`main`]; or `evaler-kernel
/// stdio-server --lang D -- COMMAND...`, the STDIO server that a supervisor
/// in `evaler-kernel` starts in the box (the same small executable again).
pub fn slim_main() -> Result<i32> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.as_slice() {
        [flag, json] if flag == ARGS_FLAG => {
            let args: KernelArgs = match serde_json::from_str(json) {
                Ok(args) => args,
                Err(e) => return usage(format!("invalid {ARGS_FLAG}: {e}")),
            };
            match options(&args) {
                Ok(opts) => serve(opts),
                Err(msg) => usage(msg),
            }
        }
        [cmd, rest @ ..] if cmd == "stdio-server" => {
            match super::stdio_server::StdioServerArgs::from_supervisor(rest) {
                Some(args) => super::stdio_server::main(args),
                None => usage(format!(
                    "{SLIM_EXE} stdio-server --lang DIALECT [-- COMMAND...]"
                )),
            }
        }
        _ => usage(format!(
            "{SLIM_EXE} is started by `evaler kernel`: {SLIM_EXE} {ARGS_FLAG} JSON"
        )),
    }
}

/// The supervisor's options, or what is wrong with the arguments.
fn options(args: &KernelArgs) -> std::result::Result<KernelOptions, String> {
    let mut opts = KernelOptions::new(&args.lang);
    opts.listen = args.listen;
    opts.memory_kib = args.memory;
    opts.processes = args.processes;
    opts.exit_with_stdin = args.exit_with_stdin;
    opts.interrupt_grace = Duration::from_millis(args.interrupt_grace);
    opts.timeout_grace = Duration::from_millis(args.timeout_grace);
    if let Some(t) = args.timeout {
        if !(t.is_finite() && t > 0.0 && t < 1e9) {
            return Err(format!(
                "--timeout must be a positive number of seconds, not {t}"
            ));
        }
        opts.default_timeout = Some(Duration::from_secs_f64(t));
    }
    if let Some(path) = &args.kernels {
        opts.kernels = Some(KernelTable::load(path).map_err(|e| e.to_string())?);
    }
    Ok(opts)
}

fn serve(opts: KernelOptions) -> Result<i32> {
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
