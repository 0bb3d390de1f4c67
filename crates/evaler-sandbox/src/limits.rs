//! Resource limits of one run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits of one run. `None` means "no limit of this kind" (the box's own
/// caps, such as its filesystem size, still hold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time (user + system) of every process and thread of the run.
    pub cpu_time: Option<Duration>,
    /// Wall-clock time from the start of the run until the program exits.
    pub wall_time: Option<Duration>,
    /// Peak memory of the run as a whole (cgroup limit, swap included), KiB.
    pub memory_kib: Option<u64>,
    /// Stack size (RLIMIT_STACK), KiB. `None` uses the memory limit, or
    /// 64 MiB without one: judges expect deep recursion to be bounded by
    /// memory, not by the historical 8 MiB default.
    pub stack_kib: Option<u64>,
    /// Processes and threads alive at once (cgroup pids controller).
    pub processes: Option<u64>,
    /// Bytes kept of stdout and of stderr, each, KiB. More is an `OLE`.
    pub output_kib: Option<u64>,
    /// Largest file the program may write (RLIMIT_FSIZE), KiB.
    pub file_size_kib: Option<u64>,
    /// Open files per process (RLIMIT_NOFILE).
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_time: None,
            wall_time: None,
            memory_kib: None,
            stack_kib: None,
            processes: Some(64),
            output_kib: Some(64 * 1024),
            file_size_kib: None,
            open_files: 256,
        }
    }
}

impl Limits {
    pub(crate) fn effective_stack_bytes(&self) -> u64 {
        self.stack_kib
            .or(self.memory_kib)
            .unwrap_or(64 * 1024)
            .saturating_mul(1024)
    }

    pub(crate) fn output_cap_bytes(&self) -> usize {
        self.output_kib
            .map(|k| usize::try_from(k.saturating_mul(1024)).unwrap_or(usize::MAX))
            .unwrap_or(usize::MAX)
    }
}
