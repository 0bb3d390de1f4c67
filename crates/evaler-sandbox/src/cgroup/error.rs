//! The error type of the cgroup module.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while detecting, creating, configuring,
/// metering or removing evaler's cgroups.
///
/// Every variant that concerns a file names the operation and the path, so
/// `to_string()` alone is enough for a useful log line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// A system call on a cgroup (or `/proc`) file or directory failed.
    #[error("cgroup: cannot {op} {}: {error}", path.display())]
    Io {
        /// What was attempted, e.g. `write "max" to`.
        op: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error (also shown in the message, hence not
        /// exposed as `Error::source`; use [`CgroupError::raw_os_error`]).
        error: io::Error,
    },
    /// A cgroup or `/proc` file did not have the expected content.
    #[error("cgroup: cannot {op} {}: {detail}", path.display())]
    Parse {
        /// What was attempted, e.g. `parse`.
        op: String,
        /// The file concerned.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// Neither a usable cgroup v2 nor a usable cgroup v1 layout was found.
    /// The message is a single sentence saying what is missing.
    #[error("{0}")]
    Unsupported(String),
    /// The cgroup is in a state that forbids the operation (for example
    /// another live `InstanceCgroup` of this process owns it, or cgroup v2's
    /// no-internal-processes rule cannot be satisfied).
    #[error("cgroup: cannot {op} {}: {detail}", path.display())]
    Conflict {
        /// What was attempted.
        op: String,
        /// The cgroup directory concerned.
        path: PathBuf,
        /// Why it is not possible.
        detail: String,
    },
    /// Processes were still listed in the cgroup after repeated SIGKILLs.
    #[error(
        "cgroup: cannot empty {}: processes {remaining:?} still present after repeated SIGKILL",
        path.display()
    )]
    KillTimeout {
        /// The cgroup directory concerned.
        path: PathBuf,
        /// The pids still listed in `cgroup.procs`.
        remaining: Vec<i32>,
    },
}

impl CgroupError {
    /// The OS error number, when the failure was a system call error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            CgroupError::Io { error, .. } => error.raw_os_error(),
            _ => None,
        }
    }

    /// True when the failure was `ENOENT` (a missing file or directory).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CgroupError::Io { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }

    pub(crate) fn io(op: impl Into<String>, path: &Path, error: io::Error) -> Self {
        CgroupError::Io {
            op: op.into(),
            path: path.to_path_buf(),
            error,
        }
    }

    pub(crate) fn parse(op: impl Into<String>, path: &Path, detail: impl Into<String>) -> Self {
        CgroupError::Parse {
            op: op.into(),
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn conflict(op: impl Into<String>, path: &Path, detail: impl Into<String>) -> Self {
        CgroupError::Conflict {
            op: op.into(),
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}
