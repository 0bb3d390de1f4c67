//! `evaler repl --lang LANG`: a terminal REPL on a sandboxed session, built
//! on the client library (`evaler_client::session`).
//!
//! On a terminal: line editing and history (rustyline, history in
//! `~/.evaler_history`). A line is a cell, unless it obviously continues
//! (it ends with `:`, `{`, `(`, `[`, `,` or `\`, leaves a bracket open, or
//! for shells ends with `then`, `do`, `else`, `in`, `|`, `&&`): then
//! lines are read until an empty one. Ctrl-C at the prompt clears the line,
//! during a cell it interrupts the cell; Ctrl-D quits.
//!
//! From a pipe: cells are blocks of lines separated by empty lines (so
//! multi-line definitions work), or one cell per line with `--line-cells`.
//!
//! Output: the cell's stdout on stdout, its stderr on stderr, the value of
//! a trailing expression on stdout on its own line, and a note on stderr for
//! cells that did not end normally (`[timeout]`, `[interrupted]`, ...). The
//! exit code is the interpreter's when a cell exits it, 1 when the session
//! dies, 0 otherwise.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use evaler_client::session::{Session, SessionError, SessionOptions};
use evaler_proto::{RunResult, RunStatus};

#[derive(Args, Debug)]
pub struct ReplArgs {
    /// Session language: python, ruby, bash, zsh, cpp (or an alias).
    #[arg(long, value_name = "LANG")]
    lang: String,
    /// Memory limit of the whole session in KiB.
    #[arg(long, value_name = "KB")]
    memory: Option<u64>,
    /// Processes and threads alive at once.
    #[arg(long, value_name = "N")]
    processes: Option<u64>,
    /// Time limit of each cell in seconds.
    #[arg(long, value_name = "S")]
    timeout: Option<f64>,
    /// With piped input, one cell per line instead of blocks separated by
    /// empty lines.
    #[arg(long)]
    line_cells: bool,
    /// The evaler binary that runs the kernel [default: this one].
    #[arg(long, value_name = "PATH", hide = true)]
    evaler: Option<PathBuf>,
}

enum Outcome {
    Continue,
    /// The session is over; exit with this code.
    End(i32),
}

fn show(r: &RunResult) -> Outcome {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(r.stdout.as_bytes());
    if let Some(v) = &r.value {
        if !r.stdout.is_empty() && !r.stdout.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = writeln!(out, "{v}");
    }
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(r.stderr.as_bytes());
    let note = match r.status {
        Some(RunStatus::Timeout) => Some("[timeout]".to_string()),
        Some(RunStatus::Interrupted) => Some("[interrupted]".to_string()),
        Some(RunStatus::Crashed) => Some("[the session crashed]".to_string()),
        Some(RunStatus::Exited) => {
            Some(format!("[exited with status {}]", r.exit_code.unwrap_or(0)))
        }
        _ => None,
    };
    if let Some(n) = note {
        if !r.stderr.is_empty() && !r.stderr.ends_with('\n') {
            let _ = err.write_all(b"\n");
        }
        let _ = writeln!(err, "{n}");
    }
    if r.truncated == Some(true) {
        let _ = writeln!(err, "[output truncated]");
    }
    let _ = err.flush();
    match r.status {
        Some(RunStatus::Exited) => Outcome::End(r.exit_code.unwrap_or(0).clamp(0, 255) as i32),
        Some(RunStatus::Crashed) => Outcome::End(1),
        _ => Outcome::Continue,
    }
}

/// Runs one cell, turning Ctrl-C into INTERRUPT while it runs.
async fn run_cell(session: &Session, code: &str, timeout: Option<Duration>) -> Outcome {
    let run = async {
        match timeout {
            Some(t) => session.run_with_timeout(code, t).await,
            None => session.run(code).await,
        }
    };
    tokio::pin!(run);
    let res: Result<RunResult, SessionError> = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tokio::signal::ctrl_c() => {
                let _ = session.interrupt().await;
            }
        }
    };
    match res {
        Ok(r) => show(&r),
        Err(e) => {
            eprintln!("evaler repl: {e}");
            Outcome::End(1)
        }
    }
}

fn continues(line: &str, lang: &str) -> bool {
    let t = line.trim_end();
    if t.is_empty() {
        return false;
    }
    if [':', '{', '(', '[', ',', '\\']
        .iter()
        .any(|c| t.ends_with(*c))
    {
        return true;
    }
    let mut depth = 0i32;
    for c in t.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    if depth > 0 {
        return true;
    }
    let shell = matches!(lang, "bash" | "zsh" | "sh" | "shell");
    shell
        && (["then", "do", "else", "in"]
            .iter()
            .any(|w| t == *w || t.ends_with(&format!(" {w}")))
            || t.ends_with('|')
            || t.ends_with("&&"))
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".evaler_history"))
}

pub fn main(args: ReplArgs) -> Result<i32> {
    let timeout = match args.timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            eprintln!("evaler repl: --timeout must be a positive number of seconds, not {t}");
            return Ok(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let opts = SessionOptions {
        evaler: Some(match args.evaler.clone() {
            Some(p) => p,
            None => std::env::current_exe().context("finding the evaler binary")?,
        }),
        memory_kib: args.memory,
        processes: args.processes,
        ..SessionOptions::default()
    };
    let session = match rt.block_on(Session::start(&args.lang, opts)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("evaler repl: {e}");
            return Ok(1);
        }
    };
    let code = if std::io::stdin().is_terminal() {
        interactive(&rt, &session, &args.lang, timeout)?
    } else {
        piped(&rt, &session, args.line_cells, timeout)
    };
    let _ = rt.block_on(session.kill());
    Ok(code)
}

fn piped(
    rt: &tokio::runtime::Runtime,
    session: &Session,
    line_cells: bool,
    timeout: Option<Duration>,
) -> i32 {
    let stdin = std::io::stdin();
    let mut block = String::new();
    let mut lines = stdin.lock().lines();
    loop {
        let line = lines.next();
        let at_end = !matches!(line, Some(Ok(_)));
        let line = line.and_then(Result::ok).unwrap_or_default();
        let cell = if line_cells {
            (!line.trim().is_empty()).then(|| line.clone())
        } else if line.trim().is_empty() {
            (!block.trim().is_empty()).then(|| std::mem::take(&mut block))
        } else {
            block.push_str(&line);
            block.push('\n');
            if at_end {
                Some(std::mem::take(&mut block))
            } else {
                None
            }
        };
        if let Some(cell) = cell {
            if let Outcome::End(code) = rt.block_on(run_cell(session, &cell, timeout)) {
                return code;
            }
        }
        if at_end {
            return 0;
        }
    }
}

fn interactive(
    rt: &tokio::runtime::Runtime,
    session: &Session,
    lang: &str,
    timeout: Option<Duration>,
) -> Result<i32> {
    use rustyline::error::ReadlineError;
    let mut rl = rustyline::DefaultEditor::new().context("starting the line editor")?;
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    eprintln!(
        "evaler {lang} session (sandboxed). Ctrl-C interrupts a cell, Ctrl-D quits; \
         a line ending in ':' or '{{' continues until an empty line."
    );
    let mut n = 1u64;
    let code = 'outer: loop {
        let first = match rl.readline(&format!("[{n}]> ")) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break 0,
            Err(e) => return Err(e.into()),
        };
        if first.trim().is_empty() {
            continue;
        }
        let mut cell = first.clone();
        if continues(&first, lang) {
            loop {
                match rl.readline("...> ") {
                    Ok(l) if l.trim().is_empty() => break,
                    Ok(l) => {
                        cell.push('\n');
                        cell.push_str(&l);
                    }
                    Err(ReadlineError::Interrupted) => continue 'outer,
                    Err(ReadlineError::Eof) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let _ = rl.add_history_entry(cell.as_str());
        n += 1;
        if let Outcome::End(code) = rt.block_on(run_cell(session, &cell, timeout)) {
            break code;
        }
    };
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    Ok(code)
}
