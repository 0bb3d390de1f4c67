//! `evaler stdio-server` (hidden): the language server for interpreters
//! driven over standard input and output (bash, zsh, clang-repl). It runs
//! inside the sandbox, started by `evaler kernel`, and speaks the session
//! protocol on the socket it gets as standard input (`EVALER_FD=0`; safe
//! Rust cannot adopt an inherited descriptor by number, so the socket is
//! handed over as stdin). The work is in `evaler_server::session::stdio`.

use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context, Result};
use clap::Args;
use evaler_server::session::stdio::{self, StdioConfig};
use evaler_server::session::Dialect;

#[derive(Args, Debug)]
pub struct StdioServerArgs {
    /// How to drive the interpreter: bash, zsh or cpp.
    #[arg(long, value_name = "DIALECT")]
    lang: String,
    /// The interpreter's command line [default: the dialect's usual one].
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl StdioServerArgs {
    /// The arguments as the supervisor passes them, `--lang DIALECT [--
    /// COMMAND...]`, for `evaler-kernel`, which has no clap parser.
    pub fn from_supervisor(argv: &[String]) -> Option<StdioServerArgs> {
        match argv {
            [flag, lang] if flag == "--lang" => Some(StdioServerArgs {
                lang: lang.clone(),
                command: Vec::new(),
            }),
            [flag, lang, dashes, command @ ..] if flag == "--lang" && dashes == "--" => {
                Some(StdioServerArgs {
                    lang: lang.clone(),
                    command: command.to_vec(),
                })
            }
            _ => None,
        }
    }
}

pub fn main(args: StdioServerArgs) -> Result<i32> {
    let Some(dialect) = Dialect::parse(&args.lang) else {
        eprintln!(
            "evaler stdio-server: unknown dialect {:?} (use bash, zsh or cpp)",
            args.lang
        );
        return Ok(2);
    };
    match std::env::var("EVALER_FD").as_deref() {
        Ok("0") | Err(_) => {}
        Ok(other) => bail!("EVALER_FD={other}: only 0 (the socket as standard input) is supported"),
    }
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("standard input")?;
    let is_socket = std::fs::File::from(fd.try_clone().context("standard input")?)
        .metadata()
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if !is_socket {
        bail!(
            "standard input must be the session's socket (this command is run by `evaler kernel`)"
        );
    }
    let mut config = StdioConfig::new(dialect);
    if !args.command.is_empty() {
        config.command = args.command;
    }
    if let Some(cap) = std::env::var("EVALER_OUTPUT_CAP")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        config.output_cap = cap.max(1024);
    }
    Ok(stdio::serve(UnixStream::from(fd), config)?)
}
