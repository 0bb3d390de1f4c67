//! The Linux sandbox every untrusted program of evaler runs in: compilers,
//! judged submissions and interactive language servers alike.
//!
//! A [`Sandbox`] is one per process; it opens [`SandboxBox`]es, each an
//! isolated place with its own uid, cgroup, root filesystem and network
//! namespace, reused run after run. A run gets new PID, IPC, UTS and cgroup
//! namespaces, a private copy of the box's mounts, cgroup limits, rlimits, a
//! seccomp filter and no privileges. See `docs/SANDBOX.md` for what each
//! figure of an [`Outcome`] includes.
//!
//! Modules follow the mechanisms: [`cgroup`] (v1 and v2), `rootfs` (mounts),
//! `seccomp`, `launch` (the child side of a run), `run` (supervision),
//! [`files`] (host-side access to `/box`), and `sys`, the only place with
//! `unsafe`.

mod boxes;
pub mod cgroup;
mod config;
mod error;
pub mod files;
mod keeper;
mod launch;
mod limits;
mod outcome;
mod rootfs;
mod run;
mod sandbox;
pub mod seccomp;
mod spec;
mod sys;

pub use boxes::{SandboxBox, MAX_EXTRA_FDS};
pub use config::{SandboxConfig, DEFAULT_ETC};
pub use error::SandboxError;
pub use limits::Limits;
pub use outcome::{killed_by, signal_name, Outcome, Verdict};
pub use run::{ProcessHandle, Running};
pub use sandbox::Sandbox;
pub use spec::{valid_file_name, Bind, BoxFile, RunSpec, Stdin, BASE_PATH};
