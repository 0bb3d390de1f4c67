//! Errors of the sandbox itself. A program that misbehaves is never an error
//! here: it is an [`Outcome`](crate::Outcome) with a verdict. These are the
//! cases where the sandbox could not do its job (verdict `SE`).

use std::path::PathBuf;

use nix::errno::Errno;

use crate::cgroup::CgroupError;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("evaler's sandbox must run as root for now (it needs namespaces, cgroups and a uid per box); it is running as uid {uid}")]
    NotRoot { uid: u32 },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("building the seccomp filter failed: {0}")]
    Seccomp(String),
    #[error("{what} failed: {errno}")]
    Sys { what: &'static str, errno: Errno },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("preparing box {index} failed at step '{step}': {errno}")]
    Prepare {
        index: u32,
        step: String,
        errno: Errno,
    },
    #[error("setting up the run failed at step '{step}': {errno}")]
    Setup { step: &'static str, errno: Errno },
    #[error("invalid run request: {0}")]
    Invalid(String),
    #[error("invalid file name {0:?}: a box file name is one plain path component")]
    BadFileName(String),
    #[error("box file {name:?} is not a regular file")]
    NotRegular { name: String },
}

impl SandboxError {
    pub(crate) fn sys(what: &'static str) -> impl FnOnce(Errno) -> SandboxError {
        move |errno| SandboxError::Sys { what, errno }
    }
}
