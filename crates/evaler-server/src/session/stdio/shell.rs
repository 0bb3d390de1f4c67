//! bash and zsh.
//!
//! The shell runs interactive (`-i`: an interrupt aborts the whole command
//! line and returns to reading input, as at a terminal, instead of killing
//! a script) without line editing, startup files, history or prompts. A
//! cell is written to `<scratch>/cell-N` and run with
//!
//! ```text
//! . <scratch>/cell-N </dev/null
//! __evaler_end <token> $?
//! ```
//!
//! as two input lines: the cell gets EOF on stdin, a syntax error in the
//! cell (`if true; then`) only fails the `.` command, and when an interrupt
//! aborts the first line the shell still reads and runs the second.
//! `__evaler_end` prints the marker on stdout and stderr (copies of them
//! the shell made at start, fds 10 and up: a cell's `exec >file` or
//! `exec 2>&1` moves fds 1 and 2 for the cells after it too, as at a
//! terminal, but must not hide the marker) and returns the cell's status, so `$?` in the next cell is the previous cell's, as at a
//! terminal. It prints a given token once only, so the copy sent again after
//! an interrupt (in case the SIGINT hit the marker line itself) is silent.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::time::Instant;

use evaler_proto::RunStatus;

use super::{new_token, result, CellEnd, Server, Stop};
use crate::session::kernels::Dialect;

const BASH_INIT: &str = "PS1=''; PS2=''; PS0=''; PS4='+ '; PROMPT_COMMAND=''; \
unset HISTFILE MAILCHECK; set +o history; set +H; \
__evaler_last=''; exec {__evaler_o}>&1 {__evaler_e}>&2; readonly __evaler_o __evaler_e; \
__evaler_end() { if [[ \"$1\" == \"$__evaler_last\" ]]; then return \"$2\"; fi; \
__evaler_last=$1; builtin printf '\\n%s %s\\n' \"$1\" \"$2\" >&\"$__evaler_o\"; \
builtin printf '\\n%s %s\\n' \"$1\" \"$2\" >&\"$__evaler_e\"; return \"$2\"; }\n";

const ZSH_INIT: &str = "PS1=''; PS2=''; PS3=''; PS4='+ '; RPS1=''; RPS2=''; PROMPT_EOL_MARK=''; \
unsetopt prompt_sp prompt_cr prompt_subst beep correct correct_all; \
setopt no_check_jobs no_check_running_jobs no_hup interactive_comments; \
HISTFILE=''; SAVEHIST=0; \
__evaler_last=''; exec {__evaler_o}>&1 {__evaler_e}>&2; readonly __evaler_o __evaler_e; \
__evaler_end() { if [[ \"$1\" == \"$__evaler_last\" ]]; then return $2; fi; \
__evaler_last=$1; builtin printf '\\n%s %s\\n' \"$1\" \"$2\" >&$__evaler_o; \
builtin printf '\\n%s %s\\n' \"$1\" \"$2\" >&$__evaler_e; return $2; }\n";

/// Sets the shell up and waits for it to be ready; start-up noise (bash's
/// "no job control in this shell") is dropped.
pub(super) fn init(server: &mut Server, deadline: Instant) -> Result<(), Stop> {
    let token = new_token();
    let script = match server.config.dialect {
        Dialect::Zsh => ZSH_INIT,
        _ => BASH_INIT,
    };
    let input = format!("{script}__evaler_end {token} 0\n");
    server.exchange(input.as_bytes(), &token, None, Some(deadline))?;
    Ok(())
}

fn write_cell(server: &Server, n: u64, code: &str) -> io::Result<std::path::PathBuf> {
    use std::io::Write;
    let dir = &server.config.scratch;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let path = dir.join(format!("cell-{n}"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(code.as_bytes())?;
    if !code.ends_with('\n') {
        f.write_all(b"\n")?;
    }
    Ok(path)
}

static CELLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs one cell.
pub(super) fn run_cell(server: &mut Server, code: &str) -> CellEnd {
    let started = Instant::now();
    let n = CELLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let path = match write_cell(server, n, code) {
        Ok(p) => p,
        Err(e) => {
            return CellEnd::Result(result(
                Vec::new(),
                format!(
                    "evaler: cannot write the cell to {}: {e}\n",
                    server.config.scratch.display()
                )
                .into_bytes(),
                RunStatus::Error,
                false,
                started.elapsed(),
            ))
        }
    };
    let token = new_token();
    // The path is ours (no quotes or spaces in it unless the scratch
    // directory has them), so single quotes are enough.
    let input = format!(
        ". '{}' </dev/null\n__evaler_end {token} $?\n",
        path.display()
    );
    let resend = format!("__evaler_end {token} 130\n");
    let res = server.exchange(input.as_bytes(), &token, Some(resend.as_bytes()), None);
    let _ = std::fs::remove_file(&path);
    match res {
        Ok(mut ex) => {
            if server.interrupted && (ex.err == b"\n" || ex.err.ends_with(b"\n\n")) {
                // The shell's own newline after a job killed by SIGINT.
                ex.err.pop();
            }
            let status = if server.interrupted {
                RunStatus::Interrupted
            } else if ex.code == 0 {
                RunStatus::Ok
            } else {
                RunStatus::Error
            };
            CellEnd::Result(result(
                ex.out,
                ex.err,
                status,
                ex.truncated,
                started.elapsed(),
            ))
        }
        Err(Stop::Died { status, out, err }) => CellEnd::Died {
            status,
            out,
            err,
            truncated: false,
            elapsed: started.elapsed(),
        },
        Err(stop) => CellEnd::Stop(stop),
    }
}
