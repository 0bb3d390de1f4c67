//! The judge's verdict as it appears on the wire (`TResponse.verdict`).
//!
//! Serde-only on purpose: the sandbox has its own richer verdict type and
//! converts to this one at the protocol boundary.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decode::WireEnum;

/// Outcome of one test, summarised for clients that do not want to interpret
/// `status` and `comments` themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// `OK`: ran to completion within limits (exit status may be anything;
    /// answer checking is the client's business).
    #[serde(rename = "OK")]
    Ok,
    /// `RE`: runtime error (killed by a signal or non-zero exit).
    #[serde(rename = "RE")]
    RuntimeError,
    /// `TLE`: CPU or wall time limit exceeded.
    #[serde(rename = "TLE")]
    TimeLimit,
    /// `MLE`: memory limit exceeded.
    #[serde(rename = "MLE")]
    MemoryLimit,
    /// `OLE`: output limit exceeded.
    #[serde(rename = "OLE")]
    OutputLimit,
    /// `SE`: the sandbox itself failed; the result says nothing about the
    /// program.
    #[serde(rename = "SE")]
    SandboxError,
}

impl Verdict {
    /// Every verdict, in wire order.
    pub const ALL: [Verdict; 6] = [
        Verdict::Ok,
        Verdict::RuntimeError,
        Verdict::TimeLimit,
        Verdict::MemoryLimit,
        Verdict::OutputLimit,
        Verdict::SandboxError,
    ];

    /// The wire spelling: `"OK"`, `"RE"`, `"TLE"`, `"MLE"`, `"OLE"`, `"SE"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::RuntimeError => "RE",
            Verdict::TimeLimit => "TLE",
            Verdict::MemoryLimit => "MLE",
            Verdict::OutputLimit => "OLE",
            Verdict::SandboxError => "SE",
        }
    }

    /// Parses the wire spelling (exact, case-sensitive).
    pub fn from_wire(text: &str) -> Option<Self> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == text)
    }
}

impl WireEnum for Verdict {
    const EXPECTED: &'static str = "one of \"OK\", \"RE\", \"TLE\", \"MLE\", \"OLE\", \"SE\"";

    fn from_wire(text: &str) -> Option<Self> {
        Verdict::from_wire(text)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
