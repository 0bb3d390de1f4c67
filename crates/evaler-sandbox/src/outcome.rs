//! What a run produced, and how it is judged.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The verdict on one run: the protocol's own type, so that a judge passes
/// the sandbox's word on without translating it.
pub use evaler_proto::Verdict;

/// Everything measured about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Exit code when the program exited by itself.
    pub exit_code: Option<i32>,
    /// Signal that ended the program, if one did.
    pub signal: Option<i32>,
    /// CPU time (user + system) of every process and thread of the run.
    pub cpu_time: Duration,
    /// Wall time from the start of the run until the program ended.
    pub wall_time: Duration,
    /// Peak memory of the run as a whole, KiB.
    pub memory_kib: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// One human sentence, e.g. `Killed by signal 11 (SIGSEGV)`.
    pub comment: String,
}

impl Outcome {
    /// The shell's convention: the exit code, or 128+N for signal N (-1 when
    /// the program never ran).
    pub fn status(&self) -> i32 {
        match (self.exit_code, self.signal) {
            (_, Some(sig)) => 128 + sig,
            (Some(code), None) => code,
            (None, None) => -1,
        }
    }

    /// An outcome for a run the sandbox could not carry out.
    pub fn sandbox_error(comment: String) -> Outcome {
        Outcome {
            verdict: Verdict::SandboxError,
            exit_code: None,
            signal: None,
            cpu_time: Duration::ZERO,
            wall_time: Duration::ZERO,
            memory_kib: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            comment,
        }
    }
}

/// `SIGSEGV` for 11 and so on; `SIG<n>` for numbers without a name.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{sig}"))
}

/// `Killed by signal 11 (SIGSEGV)`.
pub fn killed_by(sig: i32) -> String {
    format!("Killed by signal {sig} ({})", signal_name(sig))
}
